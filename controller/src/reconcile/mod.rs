//! Reconciling a PostgresCluster: observe → desired (`resources`) → apply →
//! status → requeue. So far the steps, not the loop: `apply` (the one
//! server-side-apply helper) and `status` (pure: what was observed in, the
//! status out).

pub mod apply;
pub mod status;
