//! From raw runs to what a reader sees: medians per (scenario, target),
//! ratios between targets, the idle-client table, and the files written to
//! the output dir (results.md, results.json, runs.csv, summary.csv,
//! idle.csv). Medians are over the runs that completed cleanly; the `runs
//! ok` column says how many that was.

use crate::load::idle::IdleRecord;
use crate::load::machine::Machine;
use crate::load::measure::median;
use crate::load::runner::RunRecord;
use crate::load::scenario::Scenario;
use crate::load::scrape::ScrapeStats;
use crate::load::targets::TargetKind;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The options a run was made with, as recorded in results.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub smoke: bool,
    pub duration_s: u64,
    pub reps: u32,
    pub scale: u32,
    pub pool_size: u32,
    pub jobs: u32,
    pub warmup_s: u64,
    pub wait_idle_s: u64,
    pub idle_clients: Vec<u32>,
    pub idle_reps: u32,
    pub idle_concurrency: usize,
    pub only: Vec<String>,
    /// `--scrape-metrics`: pgwolf's /metrics fetched this often.
    #[serde(default)]
    pub scrape_metrics_s: Option<f64>,
    /// `--pgwolf-set`: lines added to pgwolf.toml.
    #[serde(default)]
    pub pgwolf_set: Vec<String>,
    /// The relay ran where it stands in (see `Scenario::runs_on`).
    #[serde(default)]
    pub relay: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SummaryRow {
    pub scenario: String,
    pub label: String,
    pub target: TargetKind,
    pub clients: u32,
    /// "ok", "2/3 ok", "failed" or "n/a (unsupported)".
    pub status: String,
    pub runs: usize,
    pub ok_runs: usize,
    pub tps: Option<f64>,
    pub tps_min: Option<f64>,
    pub tps_max: Option<f64>,
    pub avg_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Failed transactions summed over all runs.
    pub failed: Option<u64>,
    pub cpu_us_per_tx: Option<f64>,
    #[serde(default)]
    pub cs_per_tx: Option<f64>,
    pub rss_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RatioRow {
    pub scenario: String,
    pub label: String,
    pub tps_pgwolf_over_pgbouncer: Option<f64>,
    pub tps_pgwolf_over_direct: Option<f64>,
    pub cpu_pgwolf_over_pgbouncer: Option<f64>,
    pub p99_pgwolf_over_pgbouncer: Option<f64>,
    /// The relay (a byte copier, no pooling): the cost of a proxy that does
    /// no work of its own.
    #[serde(default)]
    pub tps_relay_over_pgbouncer: Option<f64>,
    #[serde(default)]
    pub cpu_relay_over_pgbouncer: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdleRow {
    pub target: TargetKind,
    pub clients: u32,
    pub reps: usize,
    pub ok_reps: usize,
    pub rss_before_mib: Option<f64>,
    pub rss_after_mib: Option<f64>,
    pub kib_per_client: Option<f64>,
    #[serde(default)]
    pub anon_kib_per_client: Option<f64>,
    pub connect_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub finished_utc: String,
    pub load_avg_end: Option<f64>,
    /// Runs with a compiler running or the CPUs busy just before.
    pub disturbed_runs: usize,
    pub summary: Vec<SummaryRow>,
    pub ratios: Vec<RatioRow>,
    pub idle_summary: Vec<IdleRow>,
    /// Warning and error lines from the proxies' logs, per proxy.
    pub proxy_log_notes: Vec<(TargetKind, Vec<String>)>,
    /// What the `/metrics` scraper saw, when there was one.
    #[serde(default)]
    pub scraped: Option<ScrapeStats>,
    pub runs: Vec<RunRecord>,
    pub idle: Vec<IdleRecord>,
}

impl Report {
    /// Whether every run and every idle measurement completed cleanly.
    pub fn all_ok(&self) -> bool {
        self.runs.iter().all(|r| r.ok)
            && self.idle.iter().all(|r| r.ok)
            && self.scraped.as_ref().is_none_or(|s| s.failures == 0)
    }
}

/// Medians per (scenario, target), in scenario then target order.
pub fn summarize(scenarios: &[Scenario], runs: &[RunRecord]) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for s in scenarios {
        for target in TargetKind::ALL {
            let mine: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| r.scenario == s.name && r.target == target)
                .collect();
            if target == TargetKind::Relay && mine.is_empty() {
                // Not started, or not a scenario it stands in (see
                // `Scenario::runs_on`): no row rather than "not run".
                continue;
            }
            let ok: Vec<&RunRecord> = mine.iter().copied().filter(|r| r.ok).collect();
            let med = |f: fn(&RunRecord) -> Option<f64>| {
                median(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let tps: Vec<f64> = ok.iter().filter_map(|r| r.tps).collect();
            let status = if s.not_pgbouncer && target == TargetKind::Pgbouncer {
                "n/a (unsupported)".to_string()
            } else if mine.is_empty() {
                "not run".to_string()
            } else if ok.len() == mine.len() {
                "ok".to_string()
            } else if ok.is_empty() {
                "failed".to_string()
            } else {
                format!("{}/{} ok", ok.len(), mine.len())
            };
            rows.push(SummaryRow {
                scenario: s.name.to_string(),
                label: s.label(),
                target,
                clients: s.clients,
                status,
                runs: mine.len(),
                ok_runs: ok.len(),
                tps: med(|r| r.tps),
                tps_min: tps.iter().copied().reduce(f64::min),
                tps_max: tps.iter().copied().reduce(f64::max),
                avg_ms: med(|r| r.avg_ms),
                p99_ms: med(|r| r.p99_ms),
                failed: (!mine.is_empty()).then(|| mine.iter().filter_map(|r| r.failed).sum()),
                cpu_us_per_tx: med(|r| r.cpu_us_per_tx),
                cs_per_tx: med(|r| r.cs_per_tx),
                rss_mib: med(|r| r.rss_mib),
            });
        }
    }
    rows
}

/// pgwolf relative to PgBouncer and to direct, per scenario.
pub fn ratios(summary: &[SummaryRow]) -> Vec<RatioRow> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for row in summary {
        if seen.contains(&row.scenario.as_str()) {
            continue;
        }
        seen.push(&row.scenario);
        let get = |t: TargetKind| {
            summary
                .iter()
                .find(|r| r.scenario == row.scenario && r.target == t)
        };
        let (Some(direct), Some(bouncer), Some(wolf)) = (
            get(TargetKind::Direct),
            get(TargetKind::Pgbouncer),
            get(TargetKind::Pgwolf),
        ) else {
            continue;
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let relay = get(TargetKind::Relay);
        out.push(RatioRow {
            scenario: row.scenario.clone(),
            label: row.label.clone(),
            tps_pgwolf_over_pgbouncer: ratio(wolf.tps, bouncer.tps),
            tps_pgwolf_over_direct: ratio(wolf.tps, direct.tps),
            cpu_pgwolf_over_pgbouncer: ratio(wolf.cpu_us_per_tx, bouncer.cpu_us_per_tx),
            p99_pgwolf_over_pgbouncer: ratio(wolf.p99_ms, bouncer.p99_ms),
            tps_relay_over_pgbouncer: relay.and_then(|r| ratio(r.tps, bouncer.tps)),
            cpu_relay_over_pgbouncer: relay
                .and_then(|r| ratio(r.cpu_us_per_tx, bouncer.cpu_us_per_tx)),
        });
    }
    out
}

/// Medians per (target, client count) of the idle measurements.
pub fn idle_summary(idle: &[IdleRecord]) -> Vec<IdleRow> {
    let mut counts: Vec<u32> = idle.iter().map(|r| r.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut rows = Vec::new();
    for clients in counts {
        for target in TargetKind::PROXIES {
            let mine: Vec<&IdleRecord> = idle
                .iter()
                .filter(|r| r.clients == clients && r.target == target)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let ok: Vec<&IdleRecord> = mine.iter().copied().filter(|r| r.ok).collect();
            let med = |f: fn(&IdleRecord) -> Option<f64>| {
                median(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            rows.push(IdleRow {
                target,
                clients,
                reps: mine.len(),
                ok_reps: ok.len(),
                rss_before_mib: med(|r| Some(r.rss_before_kib as f64 / 1024.0)),
                rss_after_mib: med(|r| Some(r.rss_after_kib as f64 / 1024.0)),
                kib_per_client: med(|r| r.kib_per_client),
                anon_kib_per_client: med(|r| r.anon_kib_per_client),
                connect_s: med(|r| Some(r.connect_s)),
            });
        }
    }
    rows
}

/// Lines of a proxy log worth a reader's attention: warnings, errors, panics.
pub fn notable_log_lines(log: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let upper = line.to_ascii_uppercase();
        let notable = ["WARN", "ERROR", "FATAL", "PANIC"]
            .iter()
            .any(|w| upper.contains(w));
        if notable && !out.iter().any(|l| l == line) {
            out.push(line.to_string());
            if out.len() >= max {
                break;
            }
        }
    }
    out
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "–".to_string(),
    }
}

/// The report as markdown: header, main table, ratios, idle table, notes.
pub fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let s = &r.settings;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# pgwolf loadbench {}\n\n{}; Linux {}; {}\n",
        m.started_utc,
        m.one_line(),
        m.kernel,
        m.pgbench
    );
    let _ = writeln!(
        md,
        "pgbench -j {} -T {} s, scale {}, pool size {}, {} interleaved rep(s){}; medians over clean runs. \
         Load average at start {}, at end {}; runs disturbed by other load: {}.\n",
        s.jobs,
        s.duration_s,
        s.scale,
        s.pool_size,
        s.reps,
        if s.smoke { " (smoke)" } else { "" },
        num(m.load_avg_start, 2),
        num(r.load_avg_end, 2),
        r.disturbed_runs
    );
    if !s.pgwolf_set.is_empty() {
        let _ = writeln!(
            md,
            "pgwolf.toml adds (`--pgwolf-set`): `{}`.\n",
            s.pgwolf_set.join("`, `")
        );
    }
    match &r.scraped {
        Some(sc) => {
            let _ = writeln!(
                md,
                "pgwolf served /metrics and the harness fetched it every {} s: {} scrapes ({} failed), \
                 median {} bytes in {} ms.\n",
                sc.interval_s,
                sc.scrapes,
                sc.failures,
                sc.median_bytes.map_or("-".into(), |b| b.to_string()),
                num(sc.median_ms, 1)
            );
        }
        None => md.push_str(
            "pgwolf's HTTP listener (/metrics) was off; its counters are always kept.\n\n",
        ),
    }
    md.push_str(
        "| scenario | target | TPS | TPS min–max | avg ms | p99 ms | failed | CPU µs/tx | switches/tx | RSS MiB | runs ok |\n",
    );
    md.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for row in &r.summary {
        if row.status == "n/a (unsupported)" {
            let _ = writeln!(
                md,
                "| `{}` | {} | n/a (unsupported) | | | | | | | | |",
                row.label,
                row.target.name()
            );
            continue;
        }
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            row.target.name(),
            num(row.tps, 0),
            num(row.tps_min, 0),
            num(row.tps_max, 0),
            num(row.avg_ms, 3),
            num(row.p99_ms, 3),
            row.failed.map_or("–".to_string(), |f| f.to_string()),
            num(row.cpu_us_per_tx, 1),
            num(row.cs_per_tx, 2),
            num(row.rss_mib, 1),
            if row.status == "ok" {
                format!("{}/{}", row.ok_runs, row.runs)
            } else {
                row.status.clone()
            }
        );
    }
    md.push_str("\n| scenario | TPS pgwolf/pgbouncer | TPS pgwolf/direct | CPU pgwolf/pgbouncer | p99 pgwolf/pgbouncer | TPS relay/pgbouncer | CPU relay/pgbouncer |\n");
    md.push_str("|---|--:|--:|--:|--:|--:|--:|\n");
    for row in &r.ratios {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            row.label,
            num(row.tps_pgwolf_over_pgbouncer, 2),
            num(row.tps_pgwolf_over_direct, 2),
            num(row.cpu_pgwolf_over_pgbouncer, 2),
            num(row.p99_pgwolf_over_pgbouncer, 2),
            num(row.tps_relay_over_pgbouncer, 2),
            num(row.cpu_relay_over_pgbouncer, 2)
        );
    }
    if r.ratios
        .iter()
        .any(|row| row.tps_relay_over_pgbouncer.is_some())
    {
        md.push_str(
            "\nrelay: bytes copied, one server connection per client, nothing parsed \
             (src/bin/relay.rs): what a proxy that does no work of its own costs on this machine.\n",
        );
    }
    if !r.idle_summary.is_empty() {
        md.push_str("\n| target | idle clients | RSS before MiB | RSS after MiB | KiB per idle client | anon KiB per idle client | login time s | ok |\n");
        md.push_str("|---|--:|--:|--:|--:|--:|--:|---|\n");
        for row in &r.idle_summary {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
                row.target.name(),
                row.clients,
                num(row.rss_before_mib, 1),
                num(row.rss_after_mib, 1),
                num(row.kib_per_client, 2),
                num(row.anon_kib_per_client, 2),
                num(row.connect_s, 1),
                row.ok_reps,
                row.reps
            );
        }
    }
    let notes = notes(r);
    if !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

/// Failures and log lines, each once.
fn notes(r: &Report) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    let mut push = |n: String| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for run in r.runs.iter().filter(|run| !run.ok) {
        push(format!(
            "rep {} `{}` via {} failed (exit {:?}, {} failed tx, {} error lines): {}",
            run.rep,
            run.label,
            run.target.name(),
            run.exit_code,
            run.failed.unwrap_or(0),
            run.error_lines,
            run.errors.join(" | ")
        ));
    }
    for rec in r
        .idle
        .iter()
        .filter(|rec| !rec.ok || !rec.errors.is_empty())
    {
        push(format!(
            "idle {} clients via {}: {} connected; {}",
            rec.clients,
            rec.target.name(),
            rec.connected,
            rec.errors.join(" | ")
        ));
    }
    for (target, lines) in &r.proxy_log_notes {
        for line in lines {
            push(format!("{} log: `{line}`", target.name()));
        }
    }
    notes
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// Rows of JSON objects as CSV, columns in field order.
fn to_csv<T: Serialize>(rows: &[T]) -> Result<String> {
    let mut out = String::new();
    let mut header_done = false;
    for row in rows {
        let serde_json::Value::Object(map) = serde_json::to_value(row)? else {
            anyhow::bail!("CSV rows must be structs");
        };
        if !header_done {
            let names: Vec<String> = map.keys().map(|k| csv_field(k)).collect();
            let _ = writeln!(out, "{}", names.join(","));
            header_done = true;
        }
        let cells: Vec<String> = map
            .values()
            .map(|v| match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => csv_field(s),
                serde_json::Value::Array(items) => csv_field(
                    &items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(" | "),
                ),
                other => other.to_string(),
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join(","));
    }
    Ok(out)
}

/// Write results.md, results.json and the CSV files into `dir`.
pub fn write_all(dir: &Path, r: &Report) -> Result<()> {
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).with_context(|| format!("write {name}"))
    };
    write("results.md", markdown(r))?;
    write("results.json", serde_json::to_string_pretty(r)?)?;
    write("runs.csv", to_csv(&r.runs)?)?;
    write("summary.csv", to_csv(&r.summary)?)?;
    write("ratios.csv", to_csv(&r.ratios)?)?;
    write("idle.csv", to_csv(&r.idle)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn notable_lines_are_distinct() {
        let log = "INFO ok\nWARN a\nWARN a\nERROR b\n";
        assert_eq!(notable_log_lines(log, 10), vec!["WARN a", "ERROR b"]);
    }
}
