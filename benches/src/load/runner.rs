//! The interleaved pgbench rounds: for each repetition, each scenario, each
//! target in turn, so that drift (cache warmth, table bloat, a neighbour's
//! build) hits every target alike. One run is measured as
//!
//! 1. PostgreSQL prepared alike for every target (checkpoint; vacuum and
//!    truncate for the writing script),
//! 2. the proxy's CPU time read from /proc before and after pgbench,
//! 3. pgbench's summary and per-transaction logs parsed,
//! 4. the proxy's resident memory read right after,
//! 5. for a variant, one more client through the same target asking what
//!    it got (the server's address, or the settings in force), so the
//!    report shows that the socket was used and who applied the settings.
//!
//! Each finished run is appended to `runs.jsonl` at once, so an interrupted
//! benchmark still leaves its raw data behind.

use crate::load::cluster::{Cluster, BENCH_PASSWORD, BENCH_USER};
use crate::load::measure;
use crate::load::pgbench::{self, Invocation};
use crate::load::scenario::{Scenario, Variant};
use crate::load::stop::Interrupt;
use crate::load::targets::{Proxy, TargetKind};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One pgbench run against one target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub rep: u32,
    pub scenario: String,
    pub label: String,
    pub target: TargetKind,
    pub clients: u32,
    pub duration_s: u64,
    pub ok: bool,
    pub tps: Option<f64>,
    pub processed: Option<u64>,
    pub failed: Option<u64>,
    pub avg_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub logged_transactions: u64,
    /// Proxy CPU (user + system, all threads) during the run, per
    /// processed transaction; `None` for direct.
    pub cpu_us_per_tx: Option<f64>,
    pub cpu_s: Option<f64>,
    /// Proxy context switches (all threads, voluntary and not) per
    /// processed transaction; `None` for direct and in older results.
    #[serde(default)]
    pub cs_per_tx: Option<f64>,
    /// Proxy VmRSS right after the run; `None` for direct.
    pub rss_mib: Option<f64>,
    pub exit_code: Option<i32>,
    pub error_lines: usize,
    pub errors: Vec<String>,
    pub load_avg_before: Option<f64>,
    /// Compiler processes seen just before or after the run.
    pub compilers_seen: u32,
    /// Busy share of all CPUs in the second before pgbench started (our
    /// servers are idle then: anything much above zero is someone else).
    pub busy_before_pct: Option<f64>,
    /// Seconds spent waiting for the machine to quieten before the run.
    pub waited_s: f64,
    /// For a variant, what a client saw through this target right after
    /// the run (see [`probe`]); `None` for plain scenarios.
    #[serde(default)]
    pub seen: Option<String>,
}

impl RunRecord {
    /// Whether something else was running on the machine around this run.
    pub fn disturbed(&self) -> bool {
        self.compilers_seen > 0 || self.busy_before_pct.is_some_and(|b| b >= QUIET_PCT)
    }
}

/// Below this busy share (all CPUs, idle servers) the machine counts as quiet.
pub const QUIET_PCT: f64 = 15.0;

/// Everything a round needs: the servers and how long each run lasts.
pub struct Rounds<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub cluster: &'a mut Cluster,
    pub proxies: &'a mut [Proxy],
    pub duration_s: u64,
    pub jobs: u32,
    pub stop: &'a Interrupt,
    /// Scratch space for pgbench's logs.
    pub work: PathBuf,
    /// `runs.jsonl` in the output dir.
    pub journal: PathBuf,
    /// How long to wait, before each run, for a busy machine to quieten.
    pub wait_idle: Duration,
    /// Both poolers' pool size: the relay runs only within it.
    pub pool_size: u32,
}

impl Rounds<'_> {
    /// A short unrecorded run per target so that caches, pools and the
    /// proxies' buffers are warm before the first measured round. The
    /// proxies' socket database is a pool of its own: it is warmed too when
    /// a server-socket scenario will run, or its first run would pay for
    /// the pool's logins.
    pub fn warm_up(&mut self, seconds: u64, scenarios: &[Scenario]) -> Result<()> {
        let plain = Scenario {
            name: "warm-up",
            args: &["-S"],
            clients: 10,
            writes: false,
            not_pgbouncer: false,
            plotted: false,
            variant: Variant::Plain,
            base: None,
        };
        let mut warm = vec![plain.clone()];
        if scenarios.iter().any(|s| s.variant == Variant::ServerSocket) {
            warm.push(Scenario {
                name: "warm-up-socket",
                variant: Variant::ServerSocket,
                ..plain
            });
        }
        let saved = self.duration_s;
        self.duration_s = seconds;
        for scenario in &warm {
            for target in self.targets(scenario) {
                let rec = self.run_one(0, scenario, target)?;
                if !rec.ok {
                    eprintln!(
                        "[loadbench] {} against {} failed: {:?}",
                        scenario.name,
                        target.name(),
                        rec.errors
                    );
                }
            }
        }
        self.duration_s = saved;
        Ok(())
    }

    /// All repetitions of all scenarios against all targets, interleaved.
    pub fn run_all(&mut self, reps: u32, scenarios: &[Scenario]) -> Result<Vec<RunRecord>> {
        let mut records = Vec::new();
        let total = reps as usize
            * scenarios
                .iter()
                .map(|s| self.targets(s).len())
                .sum::<usize>();
        for rep in 1..=reps {
            for scenario in scenarios {
                for target in self.targets(scenario) {
                    let rec = self.run_one(rep, scenario, target)?;
                    eprintln!(
                        "[loadbench] {:>3}/{total} {}",
                        records.len() + 1,
                        progress(&rec)
                    );
                    self.append_journal(&rec)?;
                    records.push(rec);
                }
            }
        }
        Ok(records)
    }

    /// What `scenario` runs against, in round order: direct PostgreSQL and
    /// every started proxy that can run it.
    fn targets(&self, scenario: &Scenario) -> Vec<TargetKind> {
        TargetKind::ALL
            .into_iter()
            .filter(|t| *t == TargetKind::Direct || self.proxies.iter().any(|p| p.kind() == *t))
            .filter(|t| scenario.runs_on(*t, self.pool_size))
            .collect()
    }

    fn run_one(&mut self, rep: u32, scenario: &Scenario, target: TargetKind) -> Result<RunRecord> {
        self.stop.check()?;
        let mut rec = RunRecord {
            rep,
            scenario: scenario.name.to_string(),
            label: scenario.label(),
            target,
            clients: scenario.clients,
            duration_s: self.duration_s,
            ok: false,
            tps: None,
            processed: None,
            failed: None,
            avg_ms: None,
            p99_ms: None,
            logged_transactions: 0,
            cpu_us_per_tx: None,
            cpu_s: None,
            cs_per_tx: None,
            rss_mib: None,
            exit_code: None,
            error_lines: 0,
            errors: Vec::new(),
            load_avg_before: measure::load_average(),
            compilers_seen: 0,
            busy_before_pct: None,
            waited_s: 0.0,
            seen: None,
        };
        if let Err(e) = self.cluster.ensure_running() {
            rec.errors.push(format!("{e:#}"));
            return Ok(rec);
        }
        self.cluster
            .before_run(self.rt, scenario.writes)
            .context("prepare PostgreSQL for a run")?;
        let (port, pid) = match self.proxies.iter_mut().find(|p| p.kind() == target) {
            Some(proxy) => {
                if let Err(e) = proxy.ensure_running() {
                    rec.errors.push(format!("{e:#}"));
                    return Ok(rec);
                }
                (proxy.port(), proxy.pid())
            }
            None => (self.cluster.port(), None),
        };

        (rec.busy_before_pct, rec.waited_s) = self.settle()?;
        rec.compilers_seen = measure::compilers_running();
        let log_dir = self
            .work
            .join(format!("{}-{}-{rep}", scenario.name, target.name()));
        let _ = std::fs::remove_dir_all(&log_dir);
        std::fs::create_dir_all(&log_dir)?;
        let cpu_before = pid.map(measure::cpu_ticks).transpose()?;
        let cs_before = pid.map(measure::context_switches).transpose()?;
        let out = pgbench::run(
            &Invocation {
                port,
                database: scenario.database(target),
                pgoptions: scenario.pgoptions(),
                scenario,
                duration_s: self.duration_s,
                jobs: self.jobs,
                log_dir: &log_dir,
            },
            self.stop,
        )?;
        if let (Some(pid), Some(before)) = (pid, cpu_before) {
            match (measure::cpu_ticks(pid), measure::rss_kib(pid)) {
                (Ok(after), Ok(rss)) => {
                    let us = measure::ticks_to_us(after.saturating_sub(before));
                    rec.cpu_s = Some(us / 1e6);
                    rec.cpu_us_per_tx = out.processed.filter(|n| *n > 0).map(|n| us / n as f64);
                    rec.rss_mib = Some(rss as f64 / 1024.0);
                    if let (Some(b), Ok(a)) = (cs_before, measure::context_switches(pid)) {
                        rec.cs_per_tx = out
                            .processed
                            .filter(|n| *n > 0)
                            .map(|n| a.saturating_sub(b) as f64 / n as f64);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    rec.errors.push(format!("{} gone: {e:#}", target.name()))
                }
            }
        }
        let _ = std::fs::remove_dir_all(&log_dir);

        rec.ok = out.ok() && rec.errors.is_empty();
        rec.tps = out.tps;
        rec.processed = out.processed;
        rec.failed = out.failed;
        rec.avg_ms = out.latency.avg_ms;
        rec.p99_ms = out.latency.p99_ms;
        rec.logged_transactions = out.latency.transactions;
        rec.exit_code = out.exit_code;
        rec.error_lines = out.error_lines;
        rec.errors.extend(out.errors);
        rec.compilers_seen = rec.compilers_seen.max(measure::compilers_running());
        if rec.rep > 0 {
            rec.seen = probe(self.rt, port, scenario, target);
        }
        Ok(rec)
    }

    /// The busy share of the machine over one second, waiting (up to
    /// `wait_idle`) while it is above [`QUIET_PCT`] or a compiler runs.
    fn settle(&self) -> Result<(Option<f64>, f64)> {
        let started = Instant::now();
        let deadline = started + self.wait_idle;
        let mut said = false;
        loop {
            let busy = measure::cpu_busy_pct(Duration::from_secs(1));
            let quiet = busy.is_none_or(|b| b < QUIET_PCT) && measure::compilers_running() == 0;
            if quiet || Instant::now() >= deadline {
                return Ok((busy, (started.elapsed().as_secs_f64() - 1.0).max(0.0)));
            }
            if !said {
                eprintln!(
                    "[loadbench] machine busy ({:.0}% CPU before a run); waiting up to {:?} for it to quieten",
                    busy.unwrap_or(0.0),
                    self.wait_idle
                );
                said = true;
            }
            for _ in 0..20 {
                self.stop.check()?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn append_journal(&self, rec: &RunRecord) -> Result<()> {
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.journal)?;
        writeln!(f, "{}", serde_json::to_string(rec)?)?;
        Ok(())
    }
}

/// For a variant, what one more client (tokio-postgres, connecting as
/// pgbench did) sees: the address of the server connection it was lent
/// (`inet_server_addr()` is NULL over a Unix socket), or the settings in
/// force. The simple protocol, since PgBouncer 1.18 does not carry named
/// statements across transactions. A failure is reported as the text, not
/// as a failed run: pgbench's result stands on its own.
fn probe(
    rt: &tokio::runtime::Runtime,
    port: u16,
    scenario: &Scenario,
    target: TargetKind,
) -> Option<String> {
    let sql = match scenario.variant {
        Variant::Plain => return None,
        Variant::ServerSocket => "SELECT coalesce(host(inet_server_addr()), 'Unix socket')",
        Variant::StartupOptions => {
            "SELECT 'statement_timeout=' || current_setting('statement_timeout') \
             || ', search_path=' || current_setting('search_path')"
        }
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(BENCH_USER)
        .password(BENCH_PASSWORD)
        .dbname(scenario.database(target))
        .connect_timeout(Duration::from_secs(10));
    if let Some(options) = scenario.pgoptions() {
        config.options(options);
    }
    let ask = async {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        let rows = client.simple_query(sql).await?;
        // Dropping the client sends Terminate; the connection task then ends.
        drop(client);
        let _ = conn.await;
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .context("no row")
    };
    // Bounded as a whole: a wedged proxy must not hang the benchmark here.
    let answer = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), ask).await })
        .context("timed out after 20 s")
        .and_then(|r| r);
    Some(answer.unwrap_or_else(|e| format!("probe failed: {e:#}")))
}

fn progress(rec: &RunRecord) -> String {
    let num = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".to_string(),
    };
    let mut line = format!(
        "rep {} {:<20} {:<9} tps {:>9} avg {:>7} ms p99 {:>7} ms cpu {:>6} us/tx cs {:>5}/tx",
        rec.rep,
        rec.scenario,
        rec.target.name(),
        num(rec.tps, 0),
        num(rec.avg_ms, 3),
        num(rec.p99_ms, 3),
        num(rec.cpu_us_per_tx, 1),
        num(rec.cs_per_tx, 2),
    );
    if rec.disturbed() {
        line.push_str(&format!(
            " [disturbed: {:.0}% CPU busy before, {} compiler processes]",
            rec.busy_before_pct.unwrap_or(0.0),
            rec.compilers_seen
        ));
    }
    if let Some(seen) = &rec.seen {
        line.push_str(&format!(" [saw: {seen}]"));
    }
    if rec.waited_s >= 1.0 {
        line.push_str(&format!(" [waited {:.0} s for quiet]", rec.waited_s));
    }
    if !rec.ok {
        line.push_str(&format!(" FAILED: {}", rec.errors.join(" | ")));
    }
    line
}
