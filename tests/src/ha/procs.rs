//! The cluster's processes: etcd and Patroni (children of the test), the
//! postmasters (Patroni starts them in their own session, so they outlive
//! Patroni), and the reaper that stops those when the test process dies
//! without running `Drop`.

use super::{lock, status, Member};
use crate::ports::free_port;
use crate::tools::{child_command, read_lossy, tail, wait_bounded};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PATRONI: &str = "/usr/bin/patroni";
pub const ETCD: &str = "etcd";
const ETCD_LIMIT: Duration = Duration::from_secs(20);
const PATRONI_STOP_LIMIT: Duration = Duration::from_secs(20);

/// Start etcd with its data in `base/data/etcd`; returns it and its client
/// port. Another process taking a port between our check and etcd's bind
/// shows as an early exit, so that is retried on new ports.
pub fn start_etcd(
    base: &Path,
    token: &str,
    host: IpAddr,
    netns: Option<&str>,
) -> (Child, SocketAddr) {
    let log_path = base.join("log/etcd.log");
    for _ in 0..3 {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://{host}:{client}");
        let peer_url = format!("http://{host}:{peer}");
        let log = append(&log_path);
        let mut cmd = in_netns(child_command(&which(ETCD), true), netns);
        cmd.args(["--name", "e1", "--data-dir"])
            .arg(base.join("data/etcd"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("e1={peer_url}")])
            .args(["--initial-cluster-token", token])
            // The default capnslog logger prints a deprecation warning.
            .args(["--logger", "zap"]);
        let mut child = server_env(&mut cmd, base)
            .stdout(log.try_clone().expect("dup etcd.log"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let deadline = Instant::now() + ETCD_LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = read_lossy(&log_path);
                if text.contains("address already in use") {
                    let _ = std::fs::remove_dir_all(base.join("data/etcd"));
                    break;
                }
                panic!("etcd exited with {status}:\n{}", tail(&text, 40));
            }
            let addr = SocketAddr::new(host, client);
            if status::etcd_healthy(addr) {
                return (child, addr);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "etcd not healthy within {ETCD_LIMIT:?}:\n{}",
                    tail(&read_lossy(&log_path), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!(
        "etcd could not bind its ports:\n{}",
        tail(&read_lossy(&log_path), 40)
    );
}

/// Start member `name`'s Patroni from `base/conf/NAME.yml`. Its stdout and
/// stderr, which PostgreSQL inherits, go to `base/log/NAME/postgres.log`.
/// `env` is set after the environment is cleaned (the passwords a pod
/// gets from its Secrets).
pub fn spawn_patroni(
    base: &Path,
    name: &str,
    netns: Option<&str>,
    env: &[(String, String)],
) -> Child {
    let log = append(&base.join("log").join(name).join("postgres.log"));
    let mut cmd = in_netns(child_command(Path::new(PATRONI), true), netns);
    cmd.arg(base.join("conf").join(format!("{name}.yml")));
    server_env(&mut cmd, base)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log.try_clone().expect("dup member log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn Patroni {name}: {e}"))
}

/// SIGTERM these members' Patroni all at once, so their shutdowns overlap,
/// and wait for them (SIGKILL after the bound).
pub fn stop_patronis(members: &[&Member]) {
    let mut running: Vec<(&str, Child)> = members
        .iter()
        .filter_map(|m| Some((m.info.name.as_str(), lock(&m.patroni).take()?)))
        .collect();
    for (_, child) in &running {
        signal(child.id(), "TERM");
    }
    let deadline = Instant::now() + PATRONI_STOP_LIMIT;
    for (name, child) in &mut running {
        let left = deadline.saturating_duration_since(Instant::now());
        if wait_bounded(child, left).1 {
            eprintln!("[ha] Patroni {name} did not stop in {PATRONI_STOP_LIMIT:?}; killed");
        }
    }
}

/// `cmd` run in network namespace `netns` (`ip netns exec` execs it in
/// place: same pid, same signals), or as it is.
fn in_netns(cmd: Command, netns: Option<&str>) -> Command {
    let Some(netns) = netns else { return cmd };
    let mut inside = Command::new("ip");
    inside
        .args(["netns", "exec", netns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    inside
}

fn append(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Environment for Patroni and etcd: no inherited variables that configure
/// them (`PATRONI_*` and `ETCD_*` override their config files), libpq, or a
/// foreign Python (`/usr/bin/patroni` must use Debian's own).
fn server_env<'a>(cmd: &'a mut Command, base: &Path) -> &'a mut Command {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if ["PG", "PATRONI", "ETCD", "PYTHON", "VIRTUAL_ENV"]
            .iter()
            .any(|p| key_text.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    // HOME may be /root, which the server user cannot read.
    cmd.env("HOME", base.join("run"))
        .current_dir(base)
        .stdin(Stdio::null())
}

pub fn on_path(program: &str) -> bool {
    which(program).is_absolute()
}

/// `program` resolved on `PATH`, or `program` itself when it is not there.
fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Send `signal` ("TERM", "KILL", ...); false if the process is gone.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The process's argv, or `None` if it is gone. A zombie has an empty
/// cmdline, and `kill -0` would still succeed on it.
pub fn argv(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Wait until none of `pids` is alive, for at most `limit`; true if they all went.
pub fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pids.iter().all(|pid| argv(*pid).is_none()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The live postmaster of `data_dir`, from its `postmaster.pid`. The argv
/// check keeps a stale pid file (left by SIGKILL) from naming a recycled pid.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let data = data_dir.to_str()?;
    argv(pid)?.iter().any(|a| a == data).then_some(pid)
}

/// Fast shutdown (SIGINT) of these postmasters, all at once; SIGKILL for
/// those still there after `limit`.
pub fn stop_postmasters(pids: &[u32], limit: Duration) {
    for pid in pids {
        signal(*pid, "INT");
    }
    if !wait_gone(pids, limit) {
        for pid in pids {
            if argv(*pid).is_some() {
                eprintln!("[ha] postmaster {pid} did not stop in {limit:?}; killed");
                signal(*pid, "KILL");
            }
        }
        wait_gone(pids, Duration::from_secs(5));
    }
}

/// Start the reaper for the cluster in `base`: a shell whose stdin is a pipe
/// from this process, so EOF means the test process is gone (even by
/// SIGKILL, when no `Drop` runs). It then fast-stops every postmaster under
/// `base/data` and removes `base`. Its own process group keeps it out of a
/// group kill of the test (nextest's timeout). `Drop` stops everything
/// itself and then kills the reaper.
pub fn spawn_reaper(base: &Path) -> Child {
    let data = base.join("data").display().to_string();
    let base = base.display().to_string();
    assert!(
        !base.contains('\'') && !base.contains('\n'),
        "unquotable path {base:?}"
    );
    let script = format!(
        r#"trap '' INT TERM HUP
while read -r _; do :; done
pids() {{
    for f in '{data}'/*/postmaster.pid; do
        [ -f "$f" ] || continue
        pid=$(head -n 1 "$f")
        dir=${{f%/postmaster.pid}}
        tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$dir" && echo "$pid"
    done
}}
live=$(pids)
[ -n "$live" ] && kill -INT $live 2>/dev/null
i=0
while [ -n "$live" ] && [ $i -lt 100 ]; do sleep 0.1; live=$(pids); i=$((i + 1)); done
[ -n "$live" ] && kill -KILL $live 2>/dev/null
rm -rf '{base}'
"#
    );
    let mut cmd = Command::new("sh");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the HA cluster's reaper shell")
}
