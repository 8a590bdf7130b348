//! Where the binaries and directories are, and how child processes run.
//!
//! PostgreSQL refuses to run as root, and `unsafe` (so `setuid`) is forbidden
//! in this workspace, so servers are started through util-linux `setpriv`,
//! which changes user and then `exec`s: the child's pid is the server's own.
//! `setpriv` also sets a parent-death signal, so servers die with the test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The unprivileged account servers run as when the tests run as root.
pub const SERVER_USER: &str = "nobody";
pub const SERVER_GROUP: &str = "nogroup";

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
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// A command for a long-running child (postgres, pgwolf) that dies with the
/// spawning thread. With `unprivileged`, it also drops to `nobody` when we
/// are root (postgres, initdb).
pub fn child_command(program: &Path, unprivileged: bool) -> Command {
    let drop_root = unprivileged && running_as_root();
    if drop_root && !have_setpriv() {
        panic!("running as root needs util-linux `setpriv` to start PostgreSQL as {SERVER_USER}");
    }
    if !have_setpriv() {
        return Command::new(program);
    }
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
}

/// Hand `path` (recursively) to the server account when we are root.
pub fn give_to_server_user(path: &Path) {
    if !running_as_root() {
        return;
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{SERVER_USER}:{SERVER_GROUP}"))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {} failed", path.display());
}

/// The workspace root (parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent dir")
        .to_path_buf()
}

/// The lookup function docs/security.md tells users to install for
/// auth_query: the SQL between the ```sql fences after "## auth_query",
/// so tests install exactly what the docs say.
pub fn auth_query_function_from_docs() -> String {
    let doc = std::fs::read_to_string(workspace_dir().join("docs/security.md"))
        .expect("docs/security.md");
    let section = doc
        .split("## auth_query")
        .nth(1)
        .expect("an auth_query section");
    section
        .split("```sql")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a sql block")
        .to_string()
}

/// Cargo's target dir: the test executable lives in `<target>/<profile>/deps/`.
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe.parent().expect("exe dir");
        if deps.file_name().is_some_and(|n| n == "deps") {
            if let Some(target) = deps.parent().and_then(Path::parent) {
                return target.to_path_buf();
            }
        }
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_dir().join("target"))
    })
    .clone()
}

/// Run a command to completion with stdin closed, capturing its output; kill
/// it after `limit` (the output then ends with a note saying so).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let (status, timed_out) = wait_bounded(&mut child, limit);
    let stdout = out_reader.join().unwrap_or_default();
    let mut stderr = err_reader.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[harness: killed after {limit:?}]\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Wait for a child for at most `limit`; kill it when the time is up.
/// Returns the exit status and whether it had to be killed.
/// A finished command's stdout and then stderr, as text (for a failure's
/// message, or a script whose report goes to either).
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let status = child.wait().expect("wait for killed child");
                return (status, true);
            }
        }
    }
}

/// Send a signal by name ("TERM", "HUP", "INT", ...) with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let name = signal.trim_start_matches("SIG");
    let status = Command::new("kill")
        .arg("-s")
        .arg(name)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid} failed");
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

/// The soft and hard "Max open files" limits of this process.
pub fn fd_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or("");
    let mut nums = line.split_whitespace().filter_map(|w| {
        if w == "unlimited" {
            Some(u64::MAX)
        } else {
            w.parse().ok()
        }
    });
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
}

/// Raise this process's soft open-files limit to `want` (up to the hard
/// limit) with util-linux `prlimit`, so children started afterwards inherit
/// it. Returns the soft limit now in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let (soft, hard) = fd_limits();
    if soft >= want {
        return soft;
    }
    let target = want.min(hard);
    let hard_text = if hard == u64::MAX {
        "unlimited".to_string()
    } else {
        hard.to_string()
    };
    let _ = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={target}:{hard_text}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    fd_limits().0
}
