//! [`Pgwolf`]: the real `pgwolf` binary as a child process.
//!
//! The binary is `<target>/debug/pgwolf`, rebuilt once per test process with
//! `cargo build -p pgwolf --bin pgwolf` so tests never run a stale proxy, or
//! `$PGWOLF_BIN` when set (no build then). Each instance gets a temp dir with
//! its config, userlist and log (stdout and stderr together); the log tail is
//! printed when a test panics. The process is killed on `Drop`.

use crate::ports::free_port;
use crate::tools::{
    child_command, read_lossy, run_bounded, send_signal, tail, target_dir, workspace_dir,
};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_LIMIT: Duration = Duration::from_secs(10);
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Path of the pgwolf binary under test (built on first use, see module docs).
pub fn pgwolf_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PGWOLF_BIN") {
            return Ok(PathBuf::from(bin));
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target = target_dir();
        let out = run_bounded(
            Command::new(cargo)
                .args(["build", "-q", "-p", "pgwolf", "--bin", "pgwolf"])
                .current_dir(workspace_dir())
                .env("CARGO_TARGET_DIR", &target),
            BUILD_LIMIT,
        );
        if !out.status.success() {
            return Err(format!(
                "cargo build -p pgwolf --bin pgwolf failed ({}):\n{}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 60)
            ));
        }
        Ok(target.join("debug").join("pgwolf"))
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Run the pgwolf binary to completion with `args` (e.g. `check --config F`).
pub fn run_pgwolf(args: &[&std::ffi::OsStr]) -> Output {
    run_bounded(
        Command::new(pgwolf_bin()).args(args),
        Duration::from_secs(30),
    )
}

/// A running pgwolf process.
pub struct Pgwolf {
    port: u16,
    /// The config is PgBouncer ini (`pgbouncer.ini`) rather than TOML.
    ini: bool,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    // Last field: removed after the process is gone.
    dir: TempDir,
}

impl Pgwolf {
    /// Start pgwolf with `config_toml` and `userlist` (PgBouncer userlist.txt
    /// format). Unless the config sets them, `listen = ["127.0.0.1:PORT"]`
    /// (a free port) and `auth_file` (the written userlist) are added at the top.
    /// Waits until the port accepts TCP; panics with the log if pgwolf exits.
    pub fn start(config_toml: &str, userlist: &str) -> Pgwolf {
        match Pgwolf::try_start(config_toml, userlist) {
            Ok(proxy) => proxy,
            Err(log) => panic!("pgwolf did not start:\n{}", tail(&log, 60)),
        }
    }

    /// As [`Pgwolf::start`], but a pgwolf that exits or never listens is an
    /// `Err` carrying its log.
    pub fn try_start(config_toml: &str, userlist: &str) -> Result<Pgwolf, String> {
        Pgwolf::launch(config_toml, userlist, false)
    }

    /// Start pgwolf with a PgBouncer ini config. `ini` must have a
    /// `[pgbouncer]` section; `listen_addr`, `listen_port` and `auth_file`
    /// are added to it unless set.
    pub fn start_ini(ini: &str, userlist: &str) -> Pgwolf {
        match Pgwolf::launch(ini, userlist, true) {
            Ok(proxy) => proxy,
            Err(log) => panic!("pgwolf (pgbouncer.ini) did not start:\n{}", tail(&log, 60)),
        }
    }

    fn launch(config_toml: &str, userlist: &str, ini: bool) -> Result<Pgwolf, String> {
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-proxy-")
            .tempdir()
            .expect("temp dir for pgwolf");
        let mut proxy = Pgwolf {
            port: 0,
            ini,
            child: None,
            exit: None,
            dir,
        };
        std::fs::write(proxy.userlist_path(), userlist).expect("write userlist");
        let fixed_port = if ini {
            None
        } else {
            configured_port(config_toml)
        };
        let mut last = String::new();
        for _ in 0..3 {
            proxy.port = fixed_port.unwrap_or_else(free_port);
            proxy.rewrite_config(config_toml);
            match proxy.spawn() {
                Ok(()) => return Ok(proxy),
                Err(log)
                    if fixed_port.is_none()
                        && log.to_lowercase().contains("address already in use") =>
                {
                    last = log;
                }
                Err(log) => return Err(log),
            }
        }
        Err(last)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("pgwolf has exited")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        let name = if self.ini {
            "pgbouncer.ini"
        } else {
            "pgwolf.toml"
        };
        self.dir.path().join(name)
    }

    pub fn userlist_path(&self) -> PathBuf {
        self.dir.path().join("userlist.txt")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("pgwolf.log")
    }

    /// Everything pgwolf wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Resident set size in KiB (VmRSS from /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Send a signal by name: "HUP", "SIGTERM", "INT", ...
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Wait up to `limit` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    /// Replace the config file (atomically, by rename) with `toml`, completed
    /// with this instance's `listen` and `auth_file` unless it sets them.
    /// Send "HUP" afterwards to make pgwolf reload it.
    pub fn rewrite_config(&self, toml: &str) {
        let text = if self.ini {
            complete_ini(toml, self.port, &self.userlist_path())
        } else {
            complete_config(toml, self.port, &self.userlist_path())
        };
        let tmp = self.dir.path().join("config.new");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    /// Replace the userlist (atomically, by rename).
    pub fn rewrite_userlist(&self, userlist: &str) {
        let tmp = self.dir.path().join("userlist.txt.new");
        std::fs::write(&tmp, userlist).expect("write userlist");
        std::fs::rename(&tmp, self.userlist_path()).expect("replace userlist");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open pgwolf.log");
        let mut cmd = child_command(&pgwolf_bin(), false);
        cmd.arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.env("RUST_BACKTRACE", "1");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", pgwolf_bin().display()));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "pgwolf exited early with {status}; log:\n{}",
                    self.log()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                self.exit = None;
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "pgwolf did not accept TCP on {addr} within {START_LIMIT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl std::fmt::Debug for Pgwolf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pgwolf")
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Drop for Pgwolf {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- pgwolf log (port {}), last lines ----\n{}\n----",
                self.port,
                tail(&self.log(), 60)
            );
        }
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Add `listen` and `auth_file` at the top of `toml` unless it sets them.
pub fn complete_config(toml: &str, port: u16, userlist: &Path) -> String {
    let mut head = String::new();
    if !has_top_level_key(toml, "listen") {
        head.push_str(&format!("listen = [\"127.0.0.1:{port}\"]\n"));
    }
    if !has_top_level_key(toml, "auth_file") {
        head.push_str(&format!(
            "auth_file = {:?}\n",
            userlist.display().to_string()
        ));
    }
    // Tests run many pgwolf processes at once: no shared default port.
    if !has_top_level_key(toml, "http_listen") {
        head.push_str("http_listen = \"\"\n");
    }
    head + toml
}

/// Add `listen_addr`, `listen_port` and `auth_file` to the `[pgbouncer]`
/// section of an ini unless it sets them.
pub fn complete_ini(ini: &str, port: u16, userlist: &Path) -> String {
    let sets = |key: &str| {
        ini.lines().any(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let mut extra = String::new();
    if !sets("listen_addr") {
        extra.push_str("listen_addr = 127.0.0.1\n");
    }
    if !sets("listen_port") {
        extra.push_str(&format!("listen_port = {port}\n"));
    }
    if !sets("auth_file") {
        extra.push_str(&format!("auth_file = {}\n", userlist.display()));
    }
    let mut out = String::new();
    for line in ini.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[pgbouncer]" {
            out.push_str(&extra);
        }
    }
    out
}

/// Whether `key = ...` appears before the first table header.
fn has_top_level_key(toml: &str, key: &str) -> bool {
    toml.lines()
        .map(str::trim_start)
        .take_while(|l| !l.starts_with('['))
        .any(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
}

/// The port of a `listen = ["127.0.0.1:PORT"]` the config sets itself.
fn configured_port(toml: &str) -> Option<u16> {
    if !has_top_level_key(toml, "listen") {
        return None;
    }
    let line = toml
        .lines()
        .find(|l| l.trim_start().starts_with("listen"))?;
    let after = line.split("127.0.0.1:").nth(1)?;
    after
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_config_only_where_unset() {
        let path = Path::new("/tmp/u.txt");
        let full = complete_config(
            "pool_mode = \"session\"\n[databases.a]\nlisten = 1\n",
            7000,
            path,
        );
        assert!(full.starts_with("listen = [\"127.0.0.1:7000\"]\nauth_file = \"/tmp/u.txt\"\n"));
        let own = complete_config(
            "listen = [\"127.0.0.1:7001\"]\nauth_file = \"x\"\nhttp_listen = \"127.0.0.1:9\"\n",
            7000,
            path,
        );
        assert_eq!(
            own,
            "listen = [\"127.0.0.1:7001\"]\nauth_file = \"x\"\nhttp_listen = \"127.0.0.1:9\"\n"
        );
        assert!(
            full.contains("http_listen = \"\"\n"),
            "off unless set: {full}"
        );
        assert_eq!(configured_port(&own), Some(7001));
        assert_eq!(
            configured_port("[databases.a]\nlisten = [\"127.0.0.1:5\"]"),
            None
        );
    }
}
