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
//! - [`reconcile`]: the reconcile loop's steps; so far the server-side-apply
//!   helper and the pure status computation (Ready, Progressing, Degraded).
//! - [`render`]: every object as multi-document YAML, offline (the
//!   `render` subcommand).

pub mod api;
pub mod lease;
pub mod postgres;
pub mod reconcile;
pub mod render;
pub mod resources;
pub mod run;
pub mod secrets;
pub mod yaml;
