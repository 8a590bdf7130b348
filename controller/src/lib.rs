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
//! - [`reconcile`]: one reconcile: credentials, server-side apply of every
//!   child, the rollout step, the status (Ready, Progressing, Degraded).
//! - [`rollout`]: ordered rolling updates and scale-downs (replicas first,
//!   switchover through Patroni's REST API with the poolers paused).
//! - [`render`]: every object as multi-document YAML, offline (the
//!   `render` subcommand).

pub mod api;
pub mod lease;
pub mod postgres;
pub mod reconcile;
pub mod render;
pub mod resources;
pub mod rollout;
pub mod run;
pub mod secrets;
pub mod yaml;
