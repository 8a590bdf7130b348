//! The side-by-side load harness behind `loadbench` (`scripts/bench`):
//! pgbench through PostgreSQL directly, PgBouncer and pgwolf, interleaved,
//! plus idle-client memory, reported as tables, JSON, CSV and a PNG.
//!
//! # Layout
//!
//! - [`stop`]: Ctrl-C/SIGTERM as a flag every wait polls.
//! - [`proc`]: child processes (as `nobody` when root), bounded waits, ports.
//! - [`cluster`]: the PostgreSQL 15 under test and its bench database.
//! - [`targets`]: PgBouncer and pgwolf, their equivalent configs.
//! - [`scenario`]: the pgbench scenarios.
//! - [`pgbench`]: one pgbench run, its summary and per-transaction logs.
//! - [`measure`]: /proc CPU and memory, load, order statistics.
//! - [`runner`]: the interleaved rounds, one record per run.
//! - [`idle`]: memory per idle authenticated client.
//! - [`machine`]: what it ran on.
//! - [`report`]: medians, ratios, variants against their base, JSON, CSV.
//! - [`markdown`]: the report as results.md.
//! - [`plot`]: the TPS-vs-clients PNG.
//! - [`scrape`]: `--scrape-metrics`, pgwolf's `/metrics` fetched during the runs.
//!
//! Nothing here asserts on speed: a run fails only when pgbench or a login
//! fails, or a server dies.

pub mod cluster;
pub mod idle;
pub mod machine;
pub mod markdown;
pub mod measure;
pub mod pgbench;
pub mod plot;
pub mod proc;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod scrape;
pub mod stop;
pub mod targets;
