//! pgwolf-controller: one `PostgresCluster` manifest becomes a highly
//! available PostgreSQL cluster (Spilo: Patroni with its Kubernetes DCS),
//! optionally the pgwolf pooler in front, and credentials in Secrets.
//!
//! # Layout
//! - [`api`]: the CRD types; doc comments are the schema's descriptions.
//! - [`resources`]: pure builders from a cluster (and its credentials) to
//!   the Kubernetes objects it needs. No I/O.
//! - [`secrets`]: passwords and SCRAM verifiers, generated once and then
//!   read back from their Secrets.

pub mod api;
pub mod resources;
pub mod secrets;
