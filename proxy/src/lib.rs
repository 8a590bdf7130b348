//! pgwolf: a PostgreSQL connection pooler that follows the primary.
//!
//! # Layout
//! - [`protocol`]: sans-I/O wire protocol: framing, startup packets, the few
//!   messages the proxy encodes, SCRAM and md5 exchanges.
//! - [`config`]: typed settings, TOML and PgBouncer-ini loading, validation.
//! - [`auth`]: credential sources (auth file); never logs secrets.
//! - [`sockopt`]: TCP keepalive and user timeout on every connection.
//! - [`prepared`]: named prepared statements across pooled server
//!   connections (sans-I/O, driven by the client pump).
//! - [`http`]: /metrics, /healthz, /readyz, /topology.
//! - [`topology`]: each cluster's members and roles, from Patroni's REST API
//!   or a SQL probe, in a `watch` channel the pools follow.

pub mod admin;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod control;
pub mod http;
pub mod listener;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod sockopt;
pub mod tls;
pub mod topology;
