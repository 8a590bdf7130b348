//! What pgbench is pointed at: PostgreSQL itself, PgBouncer, pgwolf, or
//! the relay (`src/bin/relay.rs`: bytes copied, one server connection per
//! client, the cost floor of any proxy; only where a client count is within
//! the pool size, so that it uses as many server connections as the two
//! poolers).
//!
//! The two proxies get equivalent configs (same pool size, transaction
//! pooling, SCRAM against the same plaintext userlist, same client limit),
//! written by the pure functions below so docs/benchmarks.md can show them
//! verbatim. PgBouncer refuses to run as root, so it runs as `nobody` then;
//! pgwolf runs as whoever we are. Each proxy has a temp dir for its config,
//! userlist and log.
//!
//! Each proxy has two database entries for the same PostgreSQL database:
//! `bench` over TCP and `bench_unix` ([`SOCKET_DB`]) over PostgreSQL's Unix
//! socket, so that one proxy process serves both paths. PgBouncer's
//! `ignore_startup_parameters` lists `options`: PgBouncer 1.18 refuses a
//! client that sends it otherwise (the startup-settings scenarios do), and
//! has no way to apply it. pgwolf applies it and needs nothing.

use crate::load::cluster::{BENCH_DB, BENCH_PASSWORD, BENCH_USER};
use crate::load::proc::{self, Daemon};
use crate::load::scenario::SOCKET_DB;
use crate::load::scrape::{ScrapeStats, Scraper};
use crate::load::stop::Interrupt;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Direct,
    Pgbouncer,
    Pgwolf,
    Relay,
}

impl TargetKind {
    /// The order of every interleaved round.
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Direct,
        TargetKind::Pgbouncer,
        TargetKind::Pgwolf,
        TargetKind::Relay,
    ];
    /// Lines of the TPS-vs-clients plot (the relay runs at one count only).
    pub const PLOTTED: [TargetKind; 3] = [
        TargetKind::Direct,
        TargetKind::Pgbouncer,
        TargetKind::Pgwolf,
    ];
    /// The two poolers: idle clients, configs and logs are theirs.
    pub const PROXIES: [TargetKind; 2] = [TargetKind::Pgbouncer, TargetKind::Pgwolf];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct",
            TargetKind::Pgbouncer => "pgbouncer",
            TargetKind::Pgwolf => "pgwolf",
            TargetKind::Relay => "relay",
        }
    }
}

/// What both proxies are configured from.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub pg_port: u16,
    /// PostgreSQL's socket directory, the `host` of [`SOCKET_DB`].
    pub pg_socket_dir: PathBuf,
    pub pool_size: u32,
    pub max_client_conn: u32,
    pub pgwolf_bin: PathBuf,
    /// The relay (`src/bin/relay.rs`); `None`: no relay runs.
    pub relay_bin: Option<PathBuf>,
    /// pgwolf serves `/metrics` and the harness fetches it this often;
    /// `None`: its HTTP listener is off.
    pub scrape_metrics: Option<Duration>,
    /// Extra top-level lines for pgwolf.toml (`--pgwolf-set`), e.g.
    /// `worker_threads = 1`, to measure one setting against the default.
    pub pgwolf_set: Vec<String>,
}

/// `userlist.txt` for both proxies: the plaintext password, which PgBouncer
/// needs to log in to the server with SCRAM on the client's behalf.
pub fn userlist() -> String {
    format!("\"{BENCH_USER}\" \"{BENCH_PASSWORD}\"\n")
}

pub fn pgbouncer_ini(listen_port: u16, auth_file: &Path, s: &ProxySettings) -> String {
    format!(
        "[databases]
{BENCH_DB} = host=127.0.0.1 port={pg_port} dbname={BENCH_DB}
{SOCKET_DB} = host={socket_dir} port={pg_port} dbname={BENCH_DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {auth_file}
pool_mode = transaction
default_pool_size = {pool}
max_client_conn = {max_client}
ignore_startup_parameters = extra_float_digits,options
log_connections = 0
log_disconnections = 0
",
        pg_port = s.pg_port,
        socket_dir = s.pg_socket_dir.display(),
        auth_file = auth_file.display(),
        pool = s.pool_size,
        max_client = s.max_client_conn,
    )
}

/// `http_port`: where pgwolf serves `/metrics`; `None` turns the listener off.
pub fn pgwolf_toml(
    listen_port: u16,
    http_port: Option<u16>,
    auth_file: &Path,
    s: &ProxySettings,
) -> String {
    let http = http_port.map_or(String::new(), |p| format!("127.0.0.1:{p}"));
    let extra: String = s.pgwolf_set.iter().map(|l| format!("{l}\n")).collect();
    format!(
        "listen = [\"127.0.0.1:{listen_port}\"]
http_listen = \"{http}\"
auth_type = \"scram-sha-256\"
auth_file = \"{auth_file}\"
pool_mode = \"transaction\"
default_pool_size = {pool}
max_client_conn = {max_client}
ignore_startup_parameters = [\"extra_float_digits\"]
{extra}
[databases.{BENCH_DB}]
host = \"127.0.0.1\"
port = {pg_port}
dbname = \"{BENCH_DB}\"

[databases.{SOCKET_DB}]
host = \"{socket_dir}\"
port = {pg_port}
dbname = \"{BENCH_DB}\"
",
        pg_port = s.pg_port,
        socket_dir = s.pg_socket_dir.display(),
        auth_file = auth_file.display(),
        pool = s.pool_size,
        max_client = s.max_client_conn,
    )
}

/// The relay's command line: where it listens, where PostgreSQL is.
pub fn relay_args(listen_port: u16, s: &ProxySettings) -> [String; 2] {
    [
        format!("127.0.0.1:{listen_port}"),
        format!("127.0.0.1:{}", s.pg_port),
    ]
}

/// A running proxy.
pub struct Proxy {
    kind: TargetKind,
    port: u16,
    daemon: Daemon,
    scraper: Option<Scraper>,
    // Last field: removed after the process is gone.
    dir: TempDir,
}

impl Proxy {
    /// Start PgBouncer or pgwolf (not `Direct`) on a free port; waits until
    /// it accepts TCP.
    pub fn start(kind: TargetKind, s: &ProxySettings, stop: &Interrupt) -> Result<Proxy> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgwolf-bench-{}-", kind.name()))
            .tempdir()
            .context("temp dir for proxy")?;
        let auth_file = dir.path().join("userlist.txt");
        std::fs::write(&auth_file, userlist())?;
        let port = proc::free_port()?;
        let http_port = match (kind, s.scrape_metrics) {
            (TargetKind::Pgwolf, Some(_)) => Some(proc::free_port()?),
            _ => None,
        };
        let (cmd, stop_signal) = match kind {
            TargetKind::Pgbouncer => {
                let ini = dir.path().join("pgbouncer.ini");
                std::fs::write(&ini, pgbouncer_ini(port, &auth_file, s))?;
                proc::give_to_server_user(dir.path())?;
                let mut cmd = proc::command(&proc::pgbouncer_bin(), true)?;
                cmd.arg(&ini);
                // SIGTERM: immediate shutdown (SIGINT would wait for clients).
                (cmd, "TERM")
            }
            TargetKind::Pgwolf => {
                let toml = dir.path().join("pgwolf.toml");
                std::fs::write(&toml, pgwolf_toml(port, http_port, &auth_file, s))?;
                let mut cmd = proc::command(&s.pgwolf_bin, false)?;
                cmd.arg("--config").arg(&toml).env("PGWOLF_LOG", "warn");
                (cmd, "TERM")
            }
            TargetKind::Relay => {
                let bin = s.relay_bin.as_ref().context("no relay binary")?;
                let mut cmd = proc::command(bin, false)?;
                cmd.args(relay_args(port, s));
                (cmd, "TERM")
            }
            TargetKind::Direct => anyhow::bail!("direct PostgreSQL is not a proxy"),
        };
        let mut cmd = cmd;
        cmd.current_dir(dir.path());
        let log = dir.path().join(format!("{}.log", kind.name()));
        let mut daemon = Daemon::spawn(kind.name(), cmd, log, stop_signal)?;
        daemon.wait_ready(port, Duration::from_secs(15), stop)?;
        let scraper = http_port
            .zip(s.scrape_metrics)
            .map(|(p, every)| Scraper::start(p, every));
        Ok(Proxy {
            kind,
            port,
            daemon,
            scraper,
            dir,
        })
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// The config file as written.
    pub fn config_text(&self) -> String {
        let name = match self.kind {
            TargetKind::Pgbouncer => "pgbouncer.ini",
            TargetKind::Relay => return "(command line only)".to_string(),
            _ => "pgwolf.toml",
        };
        proc::read_lossy(&self.dir.path().join(name))
    }

    /// Error (with the log tail) if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.daemon.ensure_running()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        proc::read_lossy(self.daemon.log_path())
    }

    /// Stop it (bounded); its log, and what the scraper saw if there was one.
    pub fn stop(mut self) -> (String, Option<ScrapeStats>) {
        let scraped = self.scraper.take().map(Scraper::finish);
        self.daemon.stop();
        (self.log(), scraped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_proxies_reach_the_same_database_over_tcp_and_the_socket() {
        let s = ProxySettings {
            pg_port: 5999,
            pg_socket_dir: PathBuf::from("/tmp/pgsock"),
            pool_size: 20,
            max_client_conn: 100,
            pgwolf_bin: PathBuf::from("pgwolf"),
            relay_bin: None,
            scrape_metrics: None,
            pgwolf_set: Vec::new(),
        };
        let ini = pgbouncer_ini(6000, Path::new("/u"), &s);
        assert!(ini.contains("\nbench_unix = host=/tmp/pgsock port=5999 dbname=bench\n"));
        assert!(ini.contains("ignore_startup_parameters = extra_float_digits,options\n"));
        let toml = pgwolf_toml(6001, None, Path::new("/u"), &s);
        assert!(toml.contains(
            "[databases.bench_unix]\nhost = \"/tmp/pgsock\"\nport = 5999\ndbname = \"bench\"\n"
        ));
        // pgwolf applies `options`: it must not be ignored there.
        assert!(toml.contains("ignore_startup_parameters = [\"extra_float_digits\"]\n"));
    }
}
