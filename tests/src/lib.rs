//! End-to-end test harness: real PostgreSQL 15, the real `pgwolf` binary and
//! real clients (tokio-postgres, psql, pgbench, JDBC). Nothing is mocked.
//!
//! # Layout
//! - [`ports`]: free loopback ports, never handed out twice in one process.
//! - [`tools`]: where binaries live (PostgreSQL, cargo's target dir), running
//!   PostgreSQL as `nobody` when the tests run as root, bounded child processes.
//! - [`postgres`]: [`PgServer`], a throw-away PostgreSQL cluster copied from a
//!   template that `initdb` makes once per target dir.
//! - [`proxy`]: [`Pgwolf`], the `pgwolf` process under test with its config,
//!   userlist and captured log.
//! - [`certs`]: a throw-away CA and certificates (rcgen) for the TLS tests.
//! - [`clients`]: tokio-postgres connections, `psql` and `pgbench` runs and the
//!   pgbench report parser.
//! - [`ha`]: [`HaCluster`], a local high-availability cluster (etcd, Patroni
//!   and 2–3 PostgreSQL members) for failover tests, with a small REST client.
//! - [`scripted`]: [`scripted::ScriptedServer`], a server that sends what the
//!   test scripts (the bytes a hostile or broken PostgreSQL would), on a
//!   free port.
//! - [`netns`]: [`netns::Lab`], test hosts with their own addresses
//!   (network namespaces on a bridge) and a fault injector that drops their
//!   packets with nftables, as a lost node looks.
//! - [`stopped`]: [`stopped::Stopped`], processes paused with SIGSTOP (a
//!   hung server, or a member's whole PostgreSQL) until dropped.
//! - [`pgbouncer`]: [`pgbouncer::PgBouncer`], Debian's PgBouncer as the
//!   peer failover figures are compared with, re-pointed by SIGHUP.
//! - [`failover`]: the clients and figures of the lost-node scenarios,
//!   through pgwolf or PgBouncer ([`failover::Pooler`]).
//! - [`fixture`]: [`Fixture`], PostgreSQL + user `app` + database `appdb` +
//!   pgwolf in front, which most tests start from.
//! - [`time`]: bounds for awaits, so a hung proxy fails a test instead of
//!   hanging it.
//!
//! Every wait in the harness is bounded. Processes are stopped on `Drop`, and
//! started with a parent-death signal, so a killed test run leaves no
//! PostgreSQL or pgwolf behind. Start servers from the test's own thread (the
//! `#[tokio::test]` body), not from `spawn_blocking`: the parent-death signal
//! follows the thread that spawned the child.

pub mod certs;
pub mod clients;
pub mod failover;
pub mod fixture;
pub mod ha;
pub mod netns;
pub mod pgbouncer;
pub mod ports;
pub mod postgres;
pub mod prometheus;
pub mod proxy;
pub mod scripted;
pub mod stopped;
pub mod time;
pub mod tools;
pub mod wire;

pub use clients::{
    connect, parse_pgbench, pgbench, psql, psql_ok, sqlstate, try_connect, PgbenchRun, PgbenchStats,
};
pub use fixture::{userlist, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
pub use ha::{HaCluster, HaOptions, MemberInfo, MemberStatus};
pub use ports::free_port;
pub use postgres::{PgOptions, PgServer, SUPERUSER, SUPERUSER_PASSWORD};
pub use proxy::{pgwolf_bin, Pgwolf};
pub use time::within;
