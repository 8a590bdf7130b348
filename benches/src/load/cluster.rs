//! [`Cluster`]: the PostgreSQL 15 the benchmark runs against.
//!
//! A fresh `initdb` in a temp dir (no cached template: the harness runs
//! rarely and a 2-second initdb keeps it independent of the test crate),
//! settings for benchmarking a proxy rather than the disk, a free loopback
//! port, and a Unix socket in a directory of its own. It runs as `nobody`
//! when we are root. A `bench` role with a SCRAM password owns database
//! `bench`, filled by `pgbench -i`. Stopped (fast shutdown) and removed on
//! `Drop`.
//!
//! The socket directory is separate from the data's temp dir because both
//! proxies connect through it (the server-socket scenarios) and they do not
//! run as the same user: PgBouncer runs as `nobody` like PostgreSQL, pgwolf
//! as whoever runs the harness. The data's dir stays private (it holds the
//! superuser's password file); the socket's dir is world-searchable, and
//! PostgreSQL makes the socket itself 0777 (`unix_socket_permissions`'
//! default), so any local user can reach it and SCRAM decides, as on TCP.

use crate::load::proc::{self, Daemon};
use crate::load::stop::Interrupt;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const SUPERUSER: &str = "postgres";
const SUPERUSER_PASSWORD: &str = "postgres-bench";
/// The role and database pgbench uses, directly and through the proxies.
pub const BENCH_USER: &str = "bench";
pub const BENCH_DB: &str = "bench";
/// A throw-away server on loopback: the password only has to be the same
/// in PostgreSQL and in both proxies' userlist.
pub const BENCH_PASSWORD: &str = "bench-password";

/// `sun_path` holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

const START_LIMIT: Duration = Duration::from_secs(60);
const INIT_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Lines appended to postgresql.conf (shown verbatim in docs/benchmarks.md).
/// `max_connections` leaves room for 200 direct pgbench clients plus the
/// proxies' pools and the harness.
pub fn conf_lines() -> Vec<&'static str> {
    vec![
        "listen_addresses = '127.0.0.1'",
        "max_connections = 300",
        "shared_buffers = 256MB",
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
    ]
}

pub struct Cluster {
    port: u16,
    daemon: Option<Daemon>,
    /// `-k`: where PostgreSQL puts `.s.PGSQL.<port>`.
    socket_dir: TempDir,
    // Last field: removed after the server has stopped.
    dir: TempDir,
}

impl Cluster {
    /// initdb, configure and start; waits until it accepts connections.
    pub fn start(stop: &Interrupt) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-bench-pg-")
            .tempdir()
            .context("temp dir for PostgreSQL")?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n"))?;
        proc::give_to_server_user(dir.path())?;
        let socket_dir = tempfile::Builder::new()
            .prefix("pgwolf-bench-pgsock-")
            .tempdir()
            .context("temp dir for PostgreSQL's socket")?;
        // PostgreSQL (as `nobody` when we are root) creates the socket and its
        // lock file here; every proxy user must be able to search it.
        proc::give_to_server_user(socket_dir.path())?;
        std::fs::set_permissions(socket_dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("chmod the socket dir")?;
        let mut initdb = proc::command(&proc::pg_bin("initdb"), true)?;
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "scram-sha-256", "-U", SUPERUSER, "-N"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--encoding=UTF8", "--locale=C"])
            .current_dir(dir.path());
        proc::run_checked(&mut initdb, Duration::from_secs(120), stop).context("initdb")?;
        let mut conf = std::fs::File::options()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        writeln!(conf, "\n# pgwolf loadbench\n{}", conf_lines().join("\n"))?;

        let mut cluster = Cluster {
            port: 0,
            daemon: None,
            socket_dir,
            dir,
        };
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = proc::free_port()?;
            match cluster.spawn(stop) {
                Ok(()) => return Ok(cluster),
                Err(e) if format!("{e:#}").contains("could not bind") => last = format!("{e:#}"),
                Err(e) => return Err(e),
            }
        }
        bail!("PostgreSQL could not bind a port: {last}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of PostgreSQL's Unix socket (`host=` in libpq terms).
    pub fn socket_dir(&self) -> &Path {
        self.socket_dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Error if the postmaster has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match &mut self.daemon {
            Some(d) => d.ensure_running(),
            None => bail!("PostgreSQL is not running"),
        }
    }

    fn spawn(&mut self, stop: &Interrupt) -> Result<()> {
        let socket = self.socket_dir().join(format!(".s.PGSQL.{}", self.port));
        // PostgreSQL would refuse too, but with a message about its own
        // setting; this names the cause (a long TMPDIR).
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes: set TMPDIR to a shorter dir",
                socket.display()
            );
        }
        let mut cmd = proc::command(&proc::pg_bin("postgres"), true)?;
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir())
            .current_dir(self.dir.path());
        // SIGINT: fast shutdown.
        let mut daemon = Daemon::spawn("postgres", cmd, self.log_path(), "INT")?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            daemon.ensure_running()?;
            stop.check()?;
            if pg_isready(self.port, stop) {
                self.daemon = Some(daemon);
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "PostgreSQL not ready within {START_LIMIT:?}; log:\n{}",
                    proc::tail(&proc::read_lossy(&self.log_path()), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Create the bench role (SCRAM password) and database, then
    /// `pgbench -i -s scale` as that role.
    pub fn prepare(
        &self,
        rt: &tokio::runtime::Runtime,
        scale: u32,
        stop: &Interrupt,
    ) -> Result<()> {
        rt.block_on(async {
            let client = self.superuser("postgres").await?;
            client
                .batch_execute(&format!(
                    "SET password_encryption = 'scram-sha-256';
                     CREATE ROLE {BENCH_USER} LOGIN PASSWORD '{BENCH_PASSWORD}'"
                ))
                .await
                .context("create role")?;
            client
                .batch_execute(&format!("CREATE DATABASE {BENCH_DB} OWNER {BENCH_USER}"))
                .await
                .context("create database")?;
            anyhow::Ok(())
        })?;
        let mut init = std::process::Command::new(proc::pg_bin("pgbench"));
        init.args(["-i", "-q", "-s", &scale.to_string()])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                BENCH_USER,
            ])
            .arg(BENCH_DB)
            .env("PGPASSWORD", BENCH_PASSWORD)
            .stdin(std::process::Stdio::null());
        proc::run_checked(&mut init, INIT_LIMIT, stop).context("pgbench -i")?;
        Ok(())
    }

    /// Before every run, for every target alike: a checkpoint, and for the
    /// writing script what pgbench's own pre-run vacuum does (we run pgbench
    /// with `-n`, since VACUUM through a pooler is not what is measured).
    pub fn before_run(&self, rt: &tokio::runtime::Runtime, writes: bool) -> Result<()> {
        rt.block_on(async {
            let client = self.superuser(BENCH_DB).await?;
            if writes {
                for sql in [
                    "VACUUM pgbench_branches",
                    "VACUUM pgbench_tellers",
                    "TRUNCATE pgbench_history",
                ] {
                    client.batch_execute(sql).await.context(sql)?;
                }
            }
            client
                .batch_execute("CHECKPOINT")
                .await
                .context("CHECKPOINT")?;
            anyhow::Ok(())
        })
    }

    async fn superuser(&self, db: &str) -> Result<tokio_postgres::Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .password(SUPERUSER_PASSWORD)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        let (client, conn) = tokio::time::timeout(
            Duration::from_secs(15),
            config.connect(tokio_postgres::NoTls),
        )
        .await
        .context("connect to PostgreSQL timed out")?
        .context("connect to PostgreSQL as superuser")?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Stop the server and keep its log (for the output dir).
    pub fn stop(&mut self, keep_log: Option<&Path>) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
        if let Some(dest) = keep_log {
            let _ = std::fs::copy(self.log_path(), dest);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop(None);
    }
}

fn pg_isready(port: u16, stop: &Interrupt) -> bool {
    let mut cmd = std::process::Command::new(proc::pg_bin("pg_isready"));
    cmd.args(["-q", "-h", "127.0.0.1", "-t", "2", "-p"])
        .arg(port.to_string());
    matches!(
        proc::run_bounded(&mut cmd, Duration::from_secs(5), stop),
        Ok((out, false)) if out.status.success()
    )
}
