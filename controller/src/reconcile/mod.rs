//! Reconciling a PostgresCluster: observe → desired (`resources`) → apply →
//! status → requeue.
//!
//! - `cluster`: one reconcile of one cluster, against any `kube::Client`.
//! - `apply`: the one server-side-apply helper.
//! - `status`: pure: what was observed in, the status out.

pub mod apply;
pub mod cluster;
pub mod status;

pub use cluster::{reconcile, Error, Outcome};
