//! Child processes: how servers and tools are started, waited for and stopped.
//!
//! PostgreSQL and PgBouncer refuse to run as root, and `unsafe` (so
//! `setuid`) is forbidden in this workspace: when we are root they start
//! through util-linux `setpriv`, which changes user and then `exec`s, so the
//! child's pid is the server's own. Every child also gets `--pdeathsig KILL`
//! (it dies if the harness is killed outright) and a process group of its
//! own (a Ctrl-C in the terminal reaches only the harness, which then stops
//! everything in order).
//!
//! Children must be spawned from the main thread: the parent-death signal
//! fires when the spawning *thread* exits, and tokio's blocking threads come
//! and go. Every wait here has a bound.

use crate::load::stop::Interrupt;
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The unprivileged account servers run as when the harness runs as root.
pub const SERVER_USER: &str = "nobody";
pub const SERVER_GROUP: &str = "nogroup";

const POLL: Duration = Duration::from_millis(20);

/// A PostgreSQL program: `$PG_BINDIR/name`, else the Debian PostgreSQL 15
/// location, else `name` on `PATH`.
pub fn pg_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Path::new(&dir).join(name);
    }
    let debian = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

/// The PgBouncer binary: `$PGBOUNCER_BIN`, else Debian's `/usr/sbin/pgbouncer`.
pub fn pgbouncer_bin() -> PathBuf {
    std::env::var_os("PGBOUNCER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"))
}

/// Whether this process's effective uid is 0 (read from /proc, no libc).
pub fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

fn have_setpriv() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A command for a child of the harness. With `unprivileged` it runs as
/// `nobody` when we are root (postgres, initdb, pgbouncer).
pub fn command(program: &Path, unprivileged: bool) -> Result<Command> {
    let drop_root = unprivileged && running_as_root();
    let mut cmd = if have_setpriv() {
        let mut cmd = Command::new("setpriv");
        if drop_root {
            cmd.args([
                &format!("--reuid={SERVER_USER}"),
                &format!("--regid={SERVER_GROUP}"),
                "--clear-groups",
            ]);
        }
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
        cmd
    } else if drop_root {
        bail!("running as root needs util-linux `setpriv` to start {program:?} as {SERVER_USER}");
    } else {
        Command::new(program)
    };
    cmd.process_group(0).stdin(Stdio::null());
    Ok(cmd)
}

/// Hand `path` (recursively) to the server account when we are root.
pub fn give_to_server_user(path: &Path) -> Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{SERVER_USER}:{SERVER_GROUP}"))
        .arg(path)
        .status()
        .context("run chown")?;
    if !status.success() {
        bail!("chown -R {SERVER_USER} {} failed", path.display());
    }
    Ok(())
}

/// Run `cmd` to completion capturing stdout and stderr; kill it after
/// `limit` or when the harness is interrupted (then `Err`). A time-out is
/// not an error: the returned flag says so.
pub fn run_bounded(cmd: &mut Command, limit: Duration, stop: &Interrupt) -> Result<(Output, bool)> {
    let what = program_name(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Instant::now() + limit;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (status, false);
        }
        if stop.is_set() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted while {what} was running");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (child.wait()?, true);
        }
        std::thread::sleep(POLL);
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    Ok((output, timed_out))
}

/// `run_bounded` for set-up steps: a failure or time-out is an error
/// carrying the output.
pub fn run_checked(cmd: &mut Command, limit: Duration, stop: &Interrupt) -> Result<Output> {
    let what = format!("{cmd:?}");
    let (out, timed_out) = run_bounded(cmd, limit, stop)?;
    if timed_out || !out.status.success() {
        bail!(
            "{what} {}:\n{}\n{}",
            if timed_out {
                format!("was killed after {limit:?}")
            } else {
                format!("failed ({})", out.status)
            },
            tail(&String::from_utf8_lossy(&out.stdout), 20),
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    Ok(out)
}

/// The program a command runs, looking through `setpriv ... -- program`.
fn program_name(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().collect();
    let program = match args.iter().position(|a| *a == "--") {
        Some(i) if cmd.get_program() == "setpriv" && i + 1 < args.len() => args[i + 1],
        _ => cmd.get_program(),
    };
    Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Send a signal by name ("TERM", "INT", ...) with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal])
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait at most `limit` for a child; kill it when the time is up. Returns
/// the exit status (if it could be had) and whether it had to be killed.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Some(status), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                return (child.wait().ok(), true);
            }
        }
    }
}

/// A long-running server (postgres, pgbouncer, pgwolf): stopped with its
/// own polite signal, then killed after a bound, on `stop` or `Drop`.
pub struct Daemon {
    name: &'static str,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    stop_signal: &'static str,
    stop_limit: Duration,
    log: PathBuf,
}

impl Daemon {
    /// Spawn `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: PathBuf,
        stop_signal: &'static str,
    ) -> Result<Daemon> {
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdout(file.try_clone()?).stderr(file);
        let child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        Ok(Daemon {
            name,
            child: Some(child),
            exit: None,
            stop_signal,
            stop_limit: Duration::from_secs(15),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `None` while running, else how it ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    /// An error naming the daemon and quoting its log if it has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); log:\n{}",
                self.name,
                tail(&read_lossy(&self.log), 30)
            ),
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Wait until `port` accepts TCP (or `ready` says so), failing if the
    /// process exits or `limit` passes.
    pub fn wait_ready(&mut self, port: u16, limit: Duration, stop: &Interrupt) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + limit;
        loop {
            self.ensure_running()?;
            stop.check()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not accept TCP on {addr} within {limit:?}; log:\n{}",
                    self.name,
                    tail(&read_lossy(&self.log), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polite signal, bounded wait, then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                send_signal(child.id(), self.stop_signal);
            }
            let (_, killed) = wait_bounded(&mut child, self.stop_limit);
            if killed {
                eprintln!(
                    "[loadbench] {} did not stop within {:?}; killed",
                    self.name, self.stop_limit
                );
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nobody listens on now, below the ephemeral range (so the
/// thousands of client connections of a run cannot take it first).
pub fn free_port() -> Result<u16> {
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0..1_000u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = seed.build_hasher();
        h.write_u64(attempt);
        let port = 12_000 + (h.finish() % 20_000) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port found")
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A file's contents, lossily decoded; empty when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// First line of `program --version`, or "unknown".
pub fn version_of(program: &Path) -> String {
    let mut cmd = Command::new(program);
    cmd.arg("--version").stdin(Stdio::null());
    match run_bounded(&mut cmd, Duration::from_secs(10), &Interrupt::default()) {
        Ok((out, false)) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("unknown")
            .to_string(),
        _ => "unknown".to_string(),
    }
}
