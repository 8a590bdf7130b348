//! Reconciling a PostgresCluster: observe → desired (`resources`) → apply →
//! status → requeue. So far only the status step, which is pure: what was
//! observed in, `status` out.

pub mod status;
