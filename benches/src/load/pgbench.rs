//! One pgbench run and what it reported.
//!
//! pgbench's summary gives the TPS (without initial connection time),
//! the processed and failed transaction counts; its per-transaction log
//! (`--log`, one file per thread) gives every transaction's latency in
//! microseconds, from which the average and the p99 are computed here.
//! Error lines on stderr (a client aborted, an `ERROR` from the server or
//! proxy) are kept verbatim for the report.

use crate::load::cluster::{BENCH_PASSWORD, BENCH_USER};
use crate::load::measure::percentile;
use crate::load::proc;
use crate::load::scenario::Scenario;
use crate::load::stop::Interrupt;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// How many distinct error lines a run keeps.
const MAX_ERRORS: usize = 10;

pub struct Invocation<'a> {
    pub port: u16,
    /// The database named at connect (a proxy's entry, or PostgreSQL's).
    pub database: &'a str,
    /// `PGOPTIONS` for pgbench's connections; `None` removes any inherited
    /// one, so that only the startup-settings scenarios send settings.
    pub pgoptions: Option<&'a str>,
    pub scenario: &'a Scenario,
    pub duration_s: u64,
    pub jobs: u32,
    /// An empty dir for the per-transaction logs.
    pub log_dir: &'a Path,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// pgbench's exit code (`None`: killed).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub tps: Option<f64>,
    pub processed: Option<u64>,
    pub failed: Option<u64>,
    pub latency: LogStats,
    /// Distinct error lines from stderr, in order of appearance.
    pub errors: Vec<String>,
    pub error_lines: usize,
}

impl Outcome {
    /// Whether the run completed cleanly: exit 0, a TPS line, no failed
    /// transactions (in the summary or the log) and no error lines.
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
            && !self.timed_out
            && self.tps.is_some()
            && self.failed.unwrap_or(0) == 0
            && self.latency.failed == 0
            && self.error_lines == 0
    }
}

/// Run pgbench; `Err` only when it could not run at all or we were
/// interrupted (a failing run is an `Outcome` that is not `ok`).
pub fn run(inv: &Invocation<'_>, stop: &Interrupt) -> Result<Outcome> {
    let s = inv.scenario;
    let mut cmd = proc::command(&proc::pg_bin("pgbench"), false)?;
    cmd.args([
        "-n",
        "-h",
        "127.0.0.1",
        "-p",
        &inv.port.to_string(),
        "-U",
        BENCH_USER,
    ])
    .args(["-c", &s.clients.to_string()])
    .args(["-j", &inv.jobs.min(s.clients).to_string()])
    .args(["-T", &inv.duration_s.to_string()])
    .arg("--log")
    .arg(format!("--log-prefix={}", inv.log_dir.join("x").display()))
    .args(s.args)
    .arg(inv.database)
    .env("PGPASSWORD", BENCH_PASSWORD)
    .env("PGCONNECT_TIMEOUT", "30");
    match inv.pgoptions {
        Some(options) => cmd.env("PGOPTIONS", options),
        None => cmd.env_remove("PGOPTIONS"),
    };
    // Time enough for 200 clients to connect and the last transactions to end.
    let limit = Duration::from_secs(inv.duration_s + 60);
    let (out, timed_out) = proc::run_bounded(&mut cmd, limit, stop)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut outcome = parse_summary(&stdout);
    outcome.exit_code = out.status.code();
    outcome.timed_out = timed_out;
    let (errors, count) = error_lines(&stderr);
    outcome.errors = errors;
    outcome.error_lines = count;
    if timed_out {
        outcome
            .errors
            .insert(0, format!("pgbench killed after {limit:?}"));
    }
    outcome.latency = read_logs(inv.log_dir)?;
    Ok(outcome)
}

/// TPS, processed and failed counts from pgbench's summary on stdout.
pub fn parse_summary(stdout: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("tps = ") {
            // "(without initial connection time)"; with -C, "(including
            // reconnection times)". The first tps line is the one we want.
            if o.tps.is_none() {
                o.tps = first_number(rest);
            }
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            o.processed = first_number(rest).map(|n| n as u64);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            o.failed = first_number(rest).map(|n| n as u64);
        }
    }
    o
}

fn first_number(text: &str) -> Option<f64> {
    text.split(|c: char| c.is_whitespace() || c == '/')
        .next()?
        .parse()
        .ok()
}

/// Distinct lines that report an error or abort, and how many such lines
/// there were. pgbench's own progress chatter is not an error.
pub fn error_lines(stderr: &str) -> (Vec<String>, usize) {
    let mut distinct: Vec<String> = Vec::new();
    let mut count = 0;
    for line in stderr.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.contains("error") || lower.contains("abort") || lower.contains("fatal") {
            count += 1;
            if distinct.len() < MAX_ERRORS && !distinct.iter().any(|d| d == line) {
                distinct.push(line.to_string());
            }
        }
    }
    (distinct, count)
}

/// Latencies from the per-transaction logs.
#[derive(Debug, Default, Clone)]
pub struct LogStats {
    pub transactions: u64,
    /// Lines whose time is `failed` (PostgreSQL 15 pgbench).
    pub failed: u64,
    pub avg_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Read every `x.*` file pgbench wrote in `dir`. A line is
/// `client_id transaction_no time script_no time_epoch time_us`; `time` is
/// the latency in µs, or `failed`/`skipped`.
pub fn read_logs(dir: &Path) -> Result<LogStats> {
    let mut latencies: Vec<u64> = Vec::new();
    let mut failed = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("x."))
        {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        for line in text.lines() {
            match line.split_whitespace().nth(2) {
                Some("failed") => failed += 1,
                Some(t) => {
                    if let Ok(us) = t.parse::<u64>() {
                        latencies.push(us);
                    }
                }
                None => {}
            }
        }
    }
    latencies.sort_unstable();
    let n = latencies.len();
    let sum: u64 = latencies.iter().sum();
    Ok(LogStats {
        transactions: n as u64,
        failed,
        avg_ms: (n > 0).then(|| sum as f64 / n as f64 / 1000.0),
        p99_ms: percentile(&latencies, 99.0).map(|us| us as f64 / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 10
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 123456
number of failed transactions: 3 (0.002%)
latency average = 0.081 ms
initial connection time = 12.345 ms
tps = 12345.678901 (without initial connection time)
";

    #[test]
    fn summary_fields() {
        let o = parse_summary(SUMMARY);
        assert_eq!(o.tps, Some(12345.678901));
        assert_eq!(o.processed, Some(123456));
        assert_eq!(o.failed, Some(3));
    }

    #[test]
    fn errors_are_deduplicated_and_counted() {
        let stderr = "pgbench: error: client 1 aborted: ERROR:  boom\n\
                      pgbench: error: client 1 aborted: ERROR:  boom\n\
                      pgbench: error: Run was aborted; the above results are incomplete.\n";
        let (lines, count) = error_lines(stderr);
        assert_eq!(count, 3);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn logs_give_average_and_p99() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = String::new();
        for i in 1..=99 {
            a.push_str(&format!("0 {i} 1000 0 1700000000 {i}\n"));
        }
        std::fs::write(dir.path().join("x.123"), a).unwrap();
        std::fs::write(
            dir.path().join("x.123.1"),
            "1 1 101000 0 1700000000 1\n1 2 failed 0 1700000000 2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("other"), "ignored\n").unwrap();
        let s = read_logs(dir.path()).unwrap();
        assert_eq!(s.transactions, 100);
        assert_eq!(s.failed, 1);
        assert_eq!(s.p99_ms, Some(1.0));
        assert!((s.avg_ms.unwrap() - 2.0).abs() < 1e-9);
    }
}
