//! [`PgServer`]: a throw-away PostgreSQL 15 cluster on a free loopback port.
//!
//! `initdb` runs once per target dir into a cached template (made under an
//! exclusive file lock, so parallel test processes do not race); each server
//! copies the template into its own temp dir, which also holds the Unix
//! socket and the server log. The server is stopped (fast shutdown) and the
//! dir removed on `Drop`; when the test panicked, the log tail is printed.

use crate::ports::free_port;
use crate::tools::{
    child_command, give_to_server_user, pg_bin, read_lossy, run_bounded, running_as_root,
    send_signal, tail, target_dir, wait_bounded,
};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The bootstrap superuser and its password (set by `initdb --pwfile`).
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres-secret";

/// Bump the suffix when the initdb options change, so stale templates are not reused.
const TEMPLATE_NAME: &str = "pgwolf-test-template-pg15-v1";
const READY_MARKER: &str = "READY";
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Server settings beyond the harness defaults.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub max_connections: u32,
    /// Lines appended to postgresql.conf, e.g. `"log_connections = on"`.
    pub conf: Vec<String>,
    /// Run on this host of a [`crate::netns::Lab`], listening on its
    /// address (and taking password logins from the lab), not on loopback.
    pub netns_host: Option<crate::netns::Host>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 100,
            conf: Vec::new(),
            netns_host: None,
        }
    }
}

/// A running (or stopped, see [`PgServer::stop`]) PostgreSQL server.
pub struct PgServer {
    port: u16,
    opts: PgOptions,
    child: Option<Child>,
    // Last field: removed after the server has stopped.
    dir: TempDir,
}

impl PgServer {
    /// Start a server with default options.
    pub fn start() -> PgServer {
        PgServer::start_with(PgOptions::default())
    }

    pub fn start_with(opts: PgOptions) -> PgServer {
        let template = template();
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-pg-")
            .tempdir()
            .expect("create temp dir for PostgreSQL");
        let data = dir.path().join("data");
        copy_tree(&template.join("data"), &data);
        if !opts.conf.is_empty() {
            let mut conf = File::options()
                .append(true)
                .open(data.join("postgresql.conf"))
                .expect("open postgresql.conf");
            writeln!(conf, "\n# pgwolf-tests\n{}", opts.conf.join("\n"))
                .expect("write postgresql.conf");
        }
        if opts.netns_host.is_some() {
            let mut hba = File::options()
                .append(true)
                .open(data.join("pg_hba.conf"))
                .expect("open pg_hba.conf");
            writeln!(hba, "host all all 10.213.0.0/16 scram-sha-256").expect("write pg_hba.conf");
        }
        give_to_server_user(dir.path());
        PgServer::launch(PgServer {
            port: 0,
            opts,
            child: None,
            dir,
        })
    }

    /// A standby streaming from `primary` (on 127.0.0.1): a base backup
    /// taken over replication as the superuser, with `-R` so it follows
    /// `primary` from its first start; returned once it streams.
    pub fn standby_of(primary: &PgServer) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-pg-")
            .tempdir()
            .expect("create temp dir for PostgreSQL");
        let mut backup = Command::new(pg_bin("pg_basebackup"));
        backup
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1"])
            .args(["-p", &primary.port().to_string(), "-U", SUPERUSER])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10");
        let out = run_bounded(&mut backup, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        give_to_server_user(dir.path());
        let standby = PgServer::launch(PgServer {
            port: 0,
            opts: PgOptions::default(),
            child: None,
            dir,
        });
        // Returned once it streams: until its WAL receiver runs, a standby
        // is one that follows no primary (the static provider gives it no
        // reads).
        let sql = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'";
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut q = crate::clients::libpq_command(
                "psql",
                standby.port,
                SUPERUSER,
                SUPERUSER_PASSWORD,
                "postgres",
            );
            q.args(["-X", "-A", "-t", "-c", sql]);
            let out = run_bounded(&mut q, Duration::from_secs(10));
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1" {
                return standby;
            }
            assert!(
                Instant::now() < deadline,
                "the standby on port {} did not stream within 30 s:\n{}",
                standby.port,
                tail(&standby.log(), 20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `server` on a free port.
    fn launch(mut server: PgServer) -> PgServer {
        // A port picked by another test process between our check and the
        // server's bind shows up as a bind failure: pick another.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if is_bind_failure(&log) => last_error = log,
                Err(log) => panic!("PostgreSQL did not start:\n{}", tail(&log, 40)),
            }
        }
        panic!(
            "PostgreSQL could not bind a port:\n{}",
            tail(&last_error, 40)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: 127.0.0.1, or its lab host's.
    pub fn host(&self) -> String {
        self.opts
            .netns_host
            .as_ref()
            .map_or("127.0.0.1".to_string(), |h| h.addr.to_string())
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The postmaster's pid, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fast shutdown (SIGINT: sessions are terminated with 57P01), waiting
    /// until the postmaster has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                send_signal(child.id(), "INT");
            }
            let (_, killed) = wait_bounded(&mut child, STOP_LIMIT);
            if killed {
                eprintln!(
                    "[harness] PostgreSQL on port {} did not stop in {STOP_LIMIT:?}; killed",
                    self.port
                );
            }
        }
    }

    /// Start again on the same port after [`PgServer::stop`] (stops first if running).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // Our own old sockets may linger a moment; someone else may hold the port.
                Err(log) if is_bind_failure(&log) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!(
                    "PostgreSQL did not restart on port {}:\n{}",
                    self.port,
                    tail(&log, 40)
                ),
            }
        }
    }

    /// A superuser connection to `db`.
    pub async fn superuser(&self, db: &str) -> tokio_postgres::Client {
        let config =
            crate::clients::config_at(&self.host(), self.port, SUPERUSER, SUPERUSER_PASSWORD, db);
        crate::clients::try_connect_with(&config)
            .await
            .unwrap_or_else(|e| panic!("superuser login to {}:{}: {e}", self.host(), self.port))
    }

    /// Run SQL (simple protocol, several statements allowed) as superuser in `db`.
    pub async fn execute(&self, db: &str, sql: &str) {
        let client = self.superuser(db).await;
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("as superuser in {db}: {sql}: {e}"));
    }

    /// Create a login role with a SCRAM-SHA-256 password.
    pub async fn create_user(&self, name: &str, password: &str) {
        let sql = format!(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE {} LOGIN PASSWORD {}",
            quote_ident(name),
            quote_literal(password)
        );
        self.execute("postgres", &sql).await;
    }

    /// Create a database owned by `owner`.
    pub async fn create_db(&self, name: &str, owner: &str) {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        self.execute("postgres", &sql).await;
    }

    /// The role's stored password (a SCRAM verifier), as a userlist could hold it.
    pub async fn password_verifier(&self, role: &str) -> String {
        let client = self.superuser("postgres").await;
        let row = client
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await
            .expect("read pg_authid");
        row.get(0)
    }

    /// Number of backends connected as `user` to `db` (client backends only).
    pub async fn backend_count(&self, user: &str, db: &str) -> i64 {
        let client = self.superuser("postgres").await;
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE usename = $1 AND datname = $2 AND backend_type = 'client backend'",
                &[&user, &db],
            )
            .await
            .expect("count backends");
        row.get(0)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Start the postmaster and wait until it accepts connections; on failure
    /// return the log.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open postgres.log");
        let mut cmd = child_command(&pg_bin("postgres"), true);
        if let Some(h) = &self.opts.netns_host {
            // `ip netns exec` runs the same command in place, in the host's namespace.
            let mut inside = Command::new("ip");
            inside
                .args(["netns", "exec", &h.netns])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            cmd = inside;
        }
        let listen = self.host();
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .arg("-c")
            .arg(format!("listen_addresses={listen}"))
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=32MB"])
            .arg("-c")
            .arg(format!("max_connections={}", self.opts.max_connections))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let mut child = cmd.spawn().expect("spawn postgres");
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited with {status}\n{}", self.log()));
            }
            if pg_isready(&listen, self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not ready within {START_LIMIT:?}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- PostgreSQL log (port {}), last lines ----\n{}\n----",
                self.port,
                tail(&self.log(), 30)
            );
        }
        self.stop();
    }
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("could not bind") || log.contains("Address already in use")
}

fn pg_isready(host: &str, port: u16) -> bool {
    Command::new(pg_bin("pg_isready"))
        .args(["-q", "-h", host, "-t", "2", "-p"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The cached, initialised cluster to copy from: `<target>/pgwolf-test-template-*`.
fn template() -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(make_template).clone()
}

fn make_template() -> PathBuf {
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("create target dir");
    // Owned by `nobody` when made as root: keep root's and users' apart.
    let name = if running_as_root() {
        format!("{TEMPLATE_NAME}-nobody")
    } else {
        TEMPLATE_NAME.to_string()
    };
    let dest = target.join(&name);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target.join(format!("{name}.lock")))
        .expect("open template lock");
    // Held until this function returns: other test processes wait here.
    lock.lock().expect("lock template");
    if dest.join(READY_MARKER).exists() {
        return dest;
    }
    let _ = std::fs::remove_dir_all(&dest);

    // initdb as the server user needs a dir it can write: a temp dir of its own.
    let work = tempfile::Builder::new()
        .prefix("pgwolf-initdb-")
        .tempdir()
        .expect("temp dir for initdb");
    let pwfile = work.path().join("pwfile");
    std::fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n")).expect("write pwfile");
    give_to_server_user(work.path());
    let data = work.path().join("data");
    let mut initdb = child_command(&pg_bin("initdb"), true);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "scram-sha-256", "-U", SUPERUSER, "-N"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["--encoding=UTF8", "--locale=C"])
        .current_dir(work.path());
    let out = run_bounded(&mut initdb, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "initdb failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let staging = target.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("create template staging dir");
    copy_tree(&data, &staging.join("data"));
    std::fs::write(staging.join(READY_MARKER), "initdb done\n").expect("write marker");
    std::fs::rename(&staging, &dest).expect("move template into place");
    dest
}

/// `cp -a`: keeps owners and modes (the data dir must stay 0700 and owned by
/// the server user).
fn copy_tree(from: &Path, to: &Path) {
    let out = run_bounded(
        Command::new("cp").arg("-a").arg(from).arg(to),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "cp -a failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
