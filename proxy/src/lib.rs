//! pgwolf: a PostgreSQL connection pooler that follows the primary.
//!
//! # Layout
//! Bottom first; each module uses only those above it in this list
//! (`tests/layers.rs` checks it).
//! - [`protocol`]: sans-I/O wire protocol: framing, startup packets, the few
//!   messages the proxy encodes, the secret forms, SCRAM and md5 exchanges.
//! - [`prepared`]: named prepared statements across pooled server
//!   connections (sans-I/O, driven by the client pump).
//! - [`config`]: typed settings, TOML and PgBouncer-ini loading, validation.
//! - [`sockopt`]: TCP keepalive and user timeout on every connection.
//! - [`net`]: TCP or Unix socket: addresses and accepted sockets.
//! - [`auth`]: credential sources (auth file, HBA file); never logs secrets.
//! - [`tls`]: rustls on both sides, built from the config.
//! - [`server`]: one server connection: connect, log in, own queries.
//! - [`topology`]: each cluster's members and roles, from Patroni's REST API,
//!   Kubernetes or a SQL probe, in a `watch` channel the pools follow.
//! - [`pool`]: per (database, user) pools of server connections, their
//!   stats and the topology they follow.
//! - [`registry`]: every connected client: cancel keys, kill switches, what
//!   SHOW CLIENTS/SERVERS list.
//! - [`app`]: the process-wide state behind one `Arc<App>`.
//! - [`client`]: one client's startup, authentication and session loop.
//! - [`control`]: PAUSE, RESUME and the planned switchover.
//! - [`http`]: /metrics, /healthz, /readyz, /topology.
//! - [`admin`]: the admin console's commands.
//! - [`listener`]: accepting clients; each one's task runs its session or
//!   the console.
//! - [`shutdown`]: signals: reload, drain, stop.

pub mod admin;
pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod control;
pub mod http;
pub mod listener;
pub mod net;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod shutdown;
pub mod sockopt;
pub mod tls;
pub mod topology;
