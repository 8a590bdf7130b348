//! Idle clients: the memory a proxy spends per connected, authenticated,
//! idle client.
//!
//! Each measurement starts a fresh proxy (so earlier runs' buffers do not
//! blur the numbers), warms it with one client that logs in, runs a query
//! and leaves (so the pool and the first server connection exist), reads
//! VmRSS, then logs in N tokio-postgres clients, at most `concurrency` logins
//! in flight. When all N are connected (every one got ReadyForQuery), VmRSS
//! is read again after a short settle; then all are closed and the proxy is
//! stopped. (after - before) / N is the cost of one idle client. RssAnon is
//! read beside VmRSS: VmRSS also counts the pages of the proxy's binary the
//! kernel mapped in, which vary from machine to machine.

use crate::load::cluster::{BENCH_DB, BENCH_PASSWORD, BENCH_USER};
use crate::load::measure;
use crate::load::stop::Interrupt;
use crate::load::targets::{Proxy, ProxySettings, TargetKind};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const LOGIN_LIMIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(1);
const MAX_ERRORS: usize = 5;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleRecord {
    pub rep: u32,
    pub target: TargetKind,
    pub clients: u32,
    pub connected: u32,
    pub ok: bool,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub kib_per_client: Option<f64>,
    /// The same from RssAnon (absent in results from before it was read).
    #[serde(default)]
    pub anon_before_kib: u64,
    #[serde(default)]
    pub anon_after_kib: u64,
    #[serde(default)]
    pub anon_kib_per_client: Option<f64>,
    pub connect_s: f64,
    pub errors: Vec<String>,
}

type Held = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// One measurement with a fresh proxy of `kind`.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    kind: TargetKind,
    settings: &ProxySettings,
    (rep, clients, concurrency): (u32, u32, usize),
    stop: &Interrupt,
) -> Result<IdleRecord> {
    let mut proxy = Proxy::start(kind, settings, stop)?;
    let pid = proxy.pid().expect("a started proxy has a pid");
    let port = proxy.port();
    rt.block_on(warm_up(port))?;
    std::thread::sleep(SETTLE);
    let rss_before_kib = measure::rss_kib(pid)?;
    let anon_before_kib = measure::anon_kib(pid)?;

    let started = Instant::now();
    let (held, mut errors) = rt.block_on(connect_all(port, clients, concurrency, stop));
    let connect_s = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    let alive = proxy.ensure_running();
    let (rss_after_kib, anon_after_kib) = match &alive {
        Ok(()) => (
            measure::rss_kib(pid).unwrap_or(0),
            measure::anon_kib(pid).unwrap_or(0),
        ),
        Err(e) => {
            errors.push(format!("{e:#}"));
            (0, 0)
        }
    };
    let connected = held.len() as u32;
    rt.block_on(close_all(held));
    let (log, _) = proxy.stop();
    stop.check()?;
    for line in crate::load::report::notable_log_lines(&log, MAX_ERRORS) {
        errors.push(format!("{} log: {line}", kind.name()));
    }
    let ok = connected == clients && alive.is_ok();
    let per_client = |before: u64, after: u64| {
        (ok && clients > 0).then(|| (after as f64 - before as f64) / clients as f64)
    };
    Ok(IdleRecord {
        rep,
        target: kind,
        clients,
        connected,
        ok,
        rss_before_kib,
        rss_after_kib,
        kib_per_client: per_client(rss_before_kib, rss_after_kib),
        anon_before_kib,
        anon_after_kib,
        anon_kib_per_client: per_client(anon_before_kib, anon_after_kib),
        connect_s,
        errors,
    })
}

fn config(port: u16) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(BENCH_USER)
        .password(BENCH_PASSWORD)
        .dbname(BENCH_DB)
        .connect_timeout(Duration::from_secs(30));
    c
}

async fn connect(port: u16) -> Result<Held> {
    let (client, conn) =
        tokio::time::timeout(LOGIN_LIMIT, config(port).connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| anyhow::anyhow!("login did not finish within {LOGIN_LIMIT:?}"))??;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, task))
}

async fn warm_up(port: u16) -> Result<()> {
    let (client, task) = connect(port).await?;
    client.simple_query("SELECT 1").await?;
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    Ok(())
}

/// Log in `n` clients, at most `concurrency` at a time. Returns the ones
/// that got in and the first few errors of the ones that did not.
async fn connect_all(
    port: u16,
    n: u32,
    concurrency: usize,
    stop: &Interrupt,
) -> (Vec<Held>, Vec<String>) {
    let mut held = Vec::with_capacity(n as usize);
    let mut errors = Vec::new();
    let mut failures = 0u32;
    let mut pending = JoinSet::new();
    let mut started = 0;
    while started < n || !pending.is_empty() {
        while started < n && pending.len() < concurrency && !stop.is_set() {
            pending.spawn(connect(port));
            started += 1;
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(h)) => held.push(h),
            Ok(Err(e)) => {
                failures += 1;
                if errors.len() < MAX_ERRORS {
                    errors.push(format!("login {}: {e:#}", held.len() + failures as usize));
                }
            }
            Err(e) => errors.push(format!("login task: {e}")),
        }
    }
    if failures > 0 {
        errors.push(format!("{failures} of {n} logins failed"));
    }
    (held, errors)
}

/// Close every client (Terminate) and wait, bounded, for their connections to end.
async fn close_all(held: Vec<Held>) {
    let (clients, tasks): (Vec<_>, Vec<_>) = held.into_iter().unzip();
    drop(clients);
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
}

/// Soft and hard "Max open files" of this process.
fn fd_limits() -> (u64, u64) {
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

/// Make sure this process (and so the proxies it starts, which inherit the
/// limit) may open `want` files: raise the soft limit with util-linux
/// `prlimit` up to the hard limit, or fail saying what is needed.
pub fn ensure_fd_limit(want: u64) -> Result<()> {
    let (soft, hard) = fd_limits();
    if soft >= want {
        return Ok(());
    }
    if hard >= want {
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg("--pid")
            .arg(std::process::id().to_string())
            .arg(format!(
                "--nofile={want}:{}",
                if hard == u64::MAX {
                    "unlimited".to_string()
                } else {
                    hard.to_string()
                }
            ));
        let _ = crate::load::proc::run_bounded(
            &mut cmd,
            Duration::from_secs(10),
            &Interrupt::default(),
        );
    }
    let (soft, hard) = fd_limits();
    if soft < want {
        bail!(
            "the idle-client test needs {want} open files, but the limit is {soft} (hard {hard}); \
             raise it (ulimit -n) or lower --idle"
        );
    }
    Ok(())
}
