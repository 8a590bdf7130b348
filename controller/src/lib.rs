//! pgwolf-controller: one `PostgresCluster` manifest becomes a highly
//! available PostgreSQL cluster (Spilo: Patroni with its Kubernetes DCS),
//! optionally the pgwolf pooler in front, and credentials in Secrets.
//!
//! # Layout
//! - [`api`]: the CRD types; doc comments are the schema's descriptions.

pub mod api;
