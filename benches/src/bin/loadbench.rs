//! `loadbench`: pgbench against PostgreSQL directly, PgBouncer and pgwolf,
//! side by side on one machine, plus the memory each proxy spends per idle
//! client. See docs/benchmarks.md; `scripts/bench` builds and runs it.
//!
//! ```text
//! loadbench                       # full run: 9 scenarios x 2-4 targets x 3 reps x 10 s, idle 2,000 and 10,000
//! loadbench --smoke               # CI: ~1 minute, fails only if a run or login fails
//! loadbench --only simple --reps 1 --idle 0
//! loadbench --only socket --reps 1 --idle 0    # -S -c 50 with the proxies on TCP and on PostgreSQL's socket
//! loadbench --only options --reps 1 --idle 0   # -S -c 50 without and with PGOPTIONS
//! ```
//!
//! Exit status: 0 when every run and login succeeded, 1 when some failed
//! (the results are still written), 2 on a harness error, 130 when
//! interrupted.

#[path = "../load/mod.rs"]
mod load;

use anyhow::{bail, Context, Result};
use clap::Parser;
use load::cluster::{self, Cluster};
use load::idle::{self, IdleRecord};
use load::machine::Machine;
use load::report::{self, Report, Settings};
use load::runner::Rounds;
use load::scenario;
use load::stop::Interrupt;
use load::targets::{Proxy, ProxySettings, TargetKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "loadbench",
    about = "pgbench through PostgreSQL, PgBouncer and pgwolf, interleaved, plus idle-client memory"
)]
struct Cli {
    /// Seconds per pgbench run [default: 10; --smoke: 2].
    #[arg(long)]
    duration: Option<u64>,
    /// Interleaved repetitions of every scenario [default: 3; --smoke: 1].
    #[arg(long)]
    reps: Option<u32>,
    /// pgbench -i scale factor [default: 10; --smoke: 1].
    #[arg(long)]
    scale: Option<u32>,
    /// default_pool_size of both proxies.
    #[arg(long, default_value_t = 20)]
    pool_size: u32,
    /// pgbench threads (-j).
    #[arg(long, default_value_t = 2)]
    jobs: u32,
    /// Seconds of unrecorded warm-up per target before the first round [default: 3; --smoke: 1].
    #[arg(long)]
    warmup: Option<u64>,
    /// Idle-client counts, comma-separated; 0 skips [default: 2000,10000; --smoke: 200].
    #[arg(long, value_delimiter = ',')]
    idle: Option<Vec<u32>>,
    /// Repetitions of each idle measurement.
    #[arg(long, default_value_t = 1)]
    idle_reps: u32,
    /// Logins in flight at once during the idle measurement.
    #[arg(long, default_value_t = 200)]
    idle_concurrency: usize,
    /// Before each run, wait up to this many seconds while the machine is
    /// busy (another build, say) [default: 600; --smoke: 0].
    #[arg(long)]
    wait_idle: Option<u64>,
    /// Output dir [default: <target>/bench/<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The short CI version: -S (also with the proxies on PostgreSQL's Unix socket, and with
    /// PGOPTIONS) and TPC-B at 10 clients, 2 s, 1 rep, scale 1, 200 idle clients.
    #[arg(long)]
    smoke: bool,
    /// Run only scenarios whose name contains this (repeatable); "idle" selects the idle test.
    /// A variant (`server-socket-*`, `startup-options-*`) brings its base scenario along.
    #[arg(long)]
    only: Vec<String>,
    /// Redraw the plot and reprint the tables of an earlier run's output
    /// dir (from its results.json), then exit.
    #[arg(long, value_name = "DIR")]
    replot: Option<PathBuf>,
    /// pgwolf serves /metrics and the harness fetches it every SECS
    /// seconds during the runs [default: pgwolf's HTTP listener off].
    #[arg(long, value_name = "SECS")]
    scrape_metrics: Option<f64>,
    /// The pgwolf binary [default: $PGWOLF_BIN, else <target>/release/pgwolf].
    #[arg(long)]
    pgwolf_bin: Option<PathBuf>,
    /// A top-level pgwolf.toml line, `KEY=VALUE` in TOML (repeatable), e.g.
    /// `worker_threads=1`: measure a setting against PgBouncer and direct.
    #[arg(long, value_name = "KEY=VALUE")]
    pgwolf_set: Vec<String>,
    /// Leave out the relay (a byte copier beside this binary, the floor of
    /// any proxy), which otherwise runs the scenarios within the pool size.
    #[arg(long)]
    no_relay: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut interrupted = false;
    match run(cli, &mut interrupted) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadbench: some runs failed (see the notes above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadbench: {e:#}");
            ExitCode::from(if interrupted { 130 } else { 2 })
        }
    }
}

/// `<target>` from this executable's path (`<target>/<profile>/loadbench`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn settings(cli: &Cli) -> Settings {
    let smoke = cli.smoke;
    let pick =
        |v: Option<u64>, full: u64, short: u64| v.unwrap_or(if smoke { short } else { full });
    let mut idle = cli.idle.clone().unwrap_or_else(|| {
        if smoke {
            vec![200]
        } else {
            vec![2_000, 10_000]
        }
    });
    idle.retain(|n| *n > 0);
    Settings {
        smoke,
        duration_s: pick(cli.duration, 10, 2),
        reps: cli.reps.unwrap_or(if smoke { 1 } else { 3 }),
        scale: cli.scale.unwrap_or(if smoke { 1 } else { 10 }),
        pool_size: cli.pool_size,
        jobs: cli.jobs,
        warmup_s: pick(cli.warmup, 3, 1),
        wait_idle_s: pick(cli.wait_idle, 600, 0),
        idle_clients: idle,
        idle_reps: cli.idle_reps,
        idle_concurrency: cli.idle_concurrency.max(1),
        only: cli.only.clone(),
        scrape_metrics_s: cli.scrape_metrics.filter(|s| *s > 0.0),
        pgwolf_set: cli.pgwolf_set.clone(),
        relay: !cli.no_relay,
    }
}

/// The relay binary, built beside this one (`--bin relay`).
fn relay_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("relay")))
        .unwrap_or_else(|| target_dir().join("release").join("relay"))
}

fn run(cli: Cli, interrupted: &mut bool) -> Result<bool> {
    if let Some(dir) = &cli.replot {
        return replot(dir);
    }
    let s = settings(&cli);
    let scenarios = scenario::filter(
        if s.smoke {
            scenario::smoke()
        } else {
            scenario::full()
        },
        &s.only,
    );
    let idle_counts = if s.only.is_empty() || s.only.iter().any(|o| "idle".contains(o.as_str())) {
        s.idle_clients.clone()
    } else {
        Vec::new()
    };
    if scenarios.is_empty() && idle_counts.is_empty() {
        bail!("--only {:?} selects nothing", s.only);
    }
    let pgwolf_bin = cli
        .pgwolf_bin
        .clone()
        .or_else(|| std::env::var_os("PGWOLF_BIN").map(PathBuf::from))
        .unwrap_or_else(|| target_dir().join("release").join("pgwolf"));
    if !pgwolf_bin.is_file() {
        bail!(
            "no pgwolf binary at {} (cargo build --release -p pgwolf, or --pgwolf-bin)",
            pgwolf_bin.display()
        );
    }
    if s.relay && !relay_bin().is_file() {
        bail!(
            "no relay binary at {} (cargo build --release -p pgwolf-benches --bin relay, or --no-relay)",
            relay_bin().display()
        );
    }
    let out_dir = cli.out.clone().unwrap_or_else(|| {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace([':', '-'], "");
        target_dir().join("bench").join(stamp)
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    eprintln!("[loadbench] output: {}", out_dir.display());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Interrupt::install(&rt)?;
    let result = bench(
        &rt,
        &s,
        &scenarios,
        &idle_counts,
        &pgwolf_bin,
        &out_dir,
        &stop,
    );
    *interrupted = stop.is_set();
    let report = result?;
    let md = report::markdown(&report);
    report::write_all(&out_dir, &report)?;
    draw_plot(&report, &scenarios, &out_dir);
    println!("{md}");
    eprintln!("[loadbench] results: {}", out_dir.display());
    Ok(report.all_ok())
}

/// `tps-vs-clients.png` in `out_dir`; a failure to draw is reported, not fatal.
fn draw_plot(report: &Report, scenarios: &[scenario::Scenario], out_dir: &Path) {
    let s = &report.settings;
    let title = format!(
        "pgbench -S (simple protocol): TPS vs clients, {}",
        report.machine.started_utc.get(..10).unwrap_or_default()
    );
    let subtitle = format!(
        "{}; pool {}, -j {}, median of {} x {} s",
        report.machine.one_line(),
        s.pool_size,
        s.jobs,
        s.reps,
        s.duration_s
    );
    let png = out_dir.join("tps-vs-clients.png");
    match load::plot::draw(
        &png,
        (&title, &subtitle),
        scenarios,
        &report.summary,
        &report.runs,
    ) {
        Ok(true) => eprintln!("[loadbench] plot: {}", png.display()),
        Ok(false) => eprintln!("[loadbench] no -S simple results: no plot"),
        Err(e) => eprintln!("[loadbench] plot failed: {e:#}"),
    }
}

/// `--replot DIR`: the plot and tables again from DIR/results.json.
fn replot(dir: &Path) -> Result<bool> {
    let path = dir.join("results.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let report: Report =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let scenarios = if report.settings.smoke {
        scenario::smoke()
    } else {
        scenario::full()
    };
    draw_plot(&report, &scenarios, dir);
    println!("{}", report::markdown(&report));
    Ok(report.all_ok())
}

/// Everything between start-up and the report; servers are stopped by
/// `Drop` whatever happens.
fn bench(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    scenarios: &[scenario::Scenario],
    idle_counts: &[u32],
    pgwolf_bin: &Path,
    out_dir: &Path,
    stop: &Interrupt,
) -> Result<Report> {
    let machine = Machine::probe(pgwolf_bin);
    if machine.compilers_at_start > 0 {
        eprintln!(
            "[loadbench] warning: {} compiler processes are running; the numbers will be disturbed",
            machine.compilers_at_start
        );
    }
    if let Some(max) = idle_counts.iter().max() {
        // Our sockets, plus headroom; the proxies inherit the limit.
        idle::ensure_fd_limit(u64::from(*max) + 1_000)?;
    }

    eprintln!(
        "[loadbench] starting PostgreSQL and loading pgbench scale {}",
        s.scale
    );
    let mut pg = Cluster::start(stop)?;
    pg.prepare(rt, s.scale, stop)?;
    std::fs::write(
        out_dir.join("postgresql.conf.bench"),
        cluster::conf_lines().join("\n") + "\n",
    )?;
    let proxy_settings = ProxySettings {
        pg_port: pg.port(),
        pg_socket_dir: pg.socket_dir().to_path_buf(),
        pool_size: s.pool_size,
        max_client_conn: 20_000,
        pgwolf_bin: pgwolf_bin.to_path_buf(),
        relay_bin: s.relay.then(relay_bin),
        scrape_metrics: s.scrape_metrics_s.map(std::time::Duration::from_secs_f64),
        pgwolf_set: s.pgwolf_set.clone(),
    };

    let mut runs = Vec::new();
    let mut log_notes = Vec::new();
    let mut scraped = None;
    if !scenarios.is_empty() {
        let mut proxies = Vec::new();
        for kind in TargetKind::PROXIES {
            let proxy = Proxy::start(kind, &proxy_settings, stop)?;
            let name = if kind == TargetKind::Pgbouncer {
                "pgbouncer.ini"
            } else {
                "pgwolf.toml"
            };
            std::fs::write(out_dir.join(name), proxy.config_text())?;
            proxies.push(proxy);
        }
        let relay_wanted = scenarios
            .iter()
            .any(|sc| sc.runs_on(TargetKind::Relay, s.pool_size));
        if proxy_settings.relay_bin.is_some() && relay_wanted {
            proxies.push(Proxy::start(TargetKind::Relay, &proxy_settings, stop)?);
        }
        let work = tempfile::Builder::new()
            .prefix("pgwolf-bench-logs-")
            .tempdir()?;
        let mut rounds = Rounds {
            rt,
            cluster: &mut pg,
            proxies: &mut proxies,
            duration_s: s.duration_s,
            jobs: s.jobs,
            stop,
            work: work.path().to_path_buf(),
            journal: out_dir.join("runs.jsonl"),
            wait_idle: std::time::Duration::from_secs(s.wait_idle_s),
            pool_size: s.pool_size,
        };
        eprintln!("[loadbench] warming up ({} s per target)", s.warmup_s);
        rounds.warm_up(s.warmup_s, scenarios)?;
        runs = rounds.run_all(s.reps, scenarios)?;
        for proxy in proxies {
            let kind = proxy.kind();
            let (log, seen) = proxy.stop();
            if let Some(seen) = seen {
                eprintln!(
                    "[loadbench] /metrics every {} s: {} scrapes, {} failed{}",
                    seen.interval_s,
                    seen.scrapes,
                    seen.failures,
                    seen.last_error
                        .as_deref()
                        .map(|e| format!(" (last: {e})"))
                        .unwrap_or_default()
                );
                scraped = Some(seen);
            }
            std::fs::write(out_dir.join(format!("{}.log", kind.name())), &log)?;
            log_notes.push((kind, report::notable_log_lines(&log, 20)));
        }
    }

    let mut idle_records: Vec<IdleRecord> = Vec::new();
    for rep in 1..=s.idle_reps {
        for &n in idle_counts {
            for kind in TargetKind::PROXIES {
                stop.check()?;
                let rec = idle::measure(
                    rt,
                    kind,
                    &proxy_settings,
                    (rep, n, s.idle_concurrency),
                    stop,
                )?;
                eprintln!(
                    "[loadbench] idle rep {rep} {:<9} {n:>6} clients: {} connected in {:.1} s, RSS {:.1} -> {:.1} MiB, {} KiB/client ({} anon){}",
                    kind.name(),
                    rec.connected,
                    rec.connect_s,
                    rec.rss_before_kib as f64 / 1024.0,
                    rec.rss_after_kib as f64 / 1024.0,
                    rec.kib_per_client.map_or("-".to_string(), |k| format!("{k:.2}")),
                    rec.anon_kib_per_client.map_or("-".to_string(), |k| format!("{k:.2}")),
                    if rec.errors.is_empty() { String::new() } else { format!(" ERRORS: {}", rec.errors.join(" | ")) }
                );
                let mut journal = std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(out_dir.join("idle.jsonl"))?;
                writeln!(journal, "{}", serde_json::to_string(&rec)?)?;
                idle_records.push(rec);
            }
        }
    }
    pg.stop(Some(&out_dir.join("postgres.log")));

    let summary = report::summarize(scenarios, &runs);
    Ok(Report {
        finished_utc: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        load_avg_end: load::measure::load_average(),
        disturbed_runs: runs.iter().filter(|r| r.disturbed()).count(),
        ratios: report::ratios(&summary),
        variants: report::variants(&summary),
        summary,
        idle_summary: report::idle_summary(&idle_records),
        proxy_log_notes: log_notes,
        scraped,
        settings: s.clone(),
        machine,
        runs,
        idle: idle_records,
    })
}
