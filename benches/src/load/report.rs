//! From raw runs to what a reader sees: medians per (scenario, target),
//! ratios between targets, the idle-client table, and the files written to
//! the output dir (results.md, results.json, runs.csv, summary.csv,
//! idle.csv). Medians are over the runs that completed cleanly; the `runs
//! ok` column says how many that was. The markdown is in [`markdown`]
//! (`crate::load::markdown`).

use crate::load::idle::IdleRecord;
use crate::load::machine::Machine;
use crate::load::measure::median;
use crate::load::runner::RunRecord;
use crate::load::scenario::{Scenario, Variant};
use crate::load::scrape::ScrapeStats;
use crate::load::targets::TargetKind;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

pub use crate::load::markdown::markdown;

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
    /// Plain, or how this scenario differs from its base.
    #[serde(default)]
    pub variant: Variant,
    /// A variant's base scenario (see `Scenario::base`).
    #[serde(default)]
    pub base: Option<String>,
    /// What the variant's probe saw through this target, each distinct
    /// answer once (see `runner::probe`).
    #[serde(default)]
    pub seen: Option<String>,
}

/// One target's figures in a variant divided by the same target's in the
/// variant's base scenario, from the same run: e.g. pgwolf with its server
/// connections on the Unix socket against pgwolf on TCP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantRow {
    pub scenario: String,
    pub label: String,
    pub variant: Variant,
    pub base: String,
    pub base_label: String,
    pub target: TargetKind,
    pub tps_over_base: Option<f64>,
    pub cpu_over_base: Option<f64>,
    pub p99_over_base: Option<f64>,
    pub seen: Option<String>,
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
    /// Variants against their base scenarios (absent in older results).
    #[serde(default)]
    pub variants: Vec<VariantRow>,
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
            if target == TargetKind::Direct && !s.runs_on(target, 0) {
                // The server-socket variant: the base's direct row is the
                // same run.
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
                variant: s.variant,
                base: s.base.map(str::to_string),
                seen: seen_text(&mine),
            });
        }
    }
    rows
}

/// The distinct answers of a target's probes, in order; `None` when there
/// were none (plain scenarios).
fn seen_text(runs: &[&RunRecord]) -> Option<String> {
    let mut distinct: Vec<&str> = Vec::new();
    for seen in runs.iter().filter_map(|r| r.seen.as_deref()) {
        if !distinct.contains(&seen) {
            distinct.push(seen);
        }
    }
    (!distinct.is_empty()).then(|| distinct.join(" / "))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// pgwolf relative to PgBouncer and to direct, per scenario. A scenario
/// without a direct row of its own (the server-socket variant) is divided
/// by its base's: direct PostgreSQL has no server hop to change.
pub fn ratios(summary: &[SummaryRow]) -> Vec<RatioRow> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for row in summary {
        if seen.contains(&row.scenario.as_str()) {
            continue;
        }
        seen.push(&row.scenario);
        let find = |scenario: &str, t: TargetKind| {
            summary
                .iter()
                .find(|r| r.scenario == scenario && r.target == t)
        };
        let get = |t: TargetKind| find(&row.scenario, t);
        let direct = get(TargetKind::Direct).or_else(|| {
            row.base
                .as_deref()
                .and_then(|b| find(b, TargetKind::Direct))
        });
        let (Some(direct), Some(bouncer), Some(wolf)) =
            (direct, get(TargetKind::Pgbouncer), get(TargetKind::Pgwolf))
        else {
            continue;
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

/// Every variant's rows against its base's, per target, in summary order.
pub fn variants(summary: &[SummaryRow]) -> Vec<VariantRow> {
    summary
        .iter()
        .filter_map(|row| {
            let base_name = row.base.as_deref()?;
            let base = summary
                .iter()
                .find(|b| b.scenario == base_name && b.target == row.target)?;
            Some(VariantRow {
                scenario: row.scenario.clone(),
                label: row.label.clone(),
                variant: row.variant,
                base: base.scenario.clone(),
                base_label: base.label.clone(),
                target: row.target,
                tps_over_base: ratio(row.tps, base.tps),
                cpu_over_base: ratio(row.cpu_us_per_tx, base.cpu_us_per_tx),
                p99_over_base: ratio(row.p99_ms, base.p99_ms),
                seen: row.seen.clone(),
            })
        })
        .collect()
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
    write("variants.csv", to_csv(&r.variants)?)?;
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

    fn row(scenario: &str, base: Option<&str>, target: TargetKind, tps: f64) -> SummaryRow {
        SummaryRow {
            scenario: scenario.to_string(),
            label: scenario.to_string(),
            target,
            clients: 50,
            status: "ok".to_string(),
            runs: 1,
            ok_runs: 1,
            tps: Some(tps),
            tps_min: Some(tps),
            tps_max: Some(tps),
            avg_ms: None,
            p99_ms: None,
            failed: Some(0),
            cpu_us_per_tx: None,
            cs_per_tx: None,
            rss_mib: None,
            variant: if base.is_some() {
                Variant::ServerSocket
            } else {
                Variant::Plain
            },
            base: base.map(str::to_string),
            seen: None,
        }
    }

    #[test]
    fn a_socket_row_is_divided_by_its_base_and_by_the_base_direct() {
        let summary = vec![
            row("tcp", None, TargetKind::Direct, 400.0),
            row("tcp", None, TargetKind::Pgbouncer, 100.0),
            row("tcp", None, TargetKind::Pgwolf, 200.0),
            row("sock", Some("tcp"), TargetKind::Pgbouncer, 110.0),
            row("sock", Some("tcp"), TargetKind::Pgwolf, 300.0),
        ];
        let ratios = ratios(&summary);
        assert_eq!(ratios.len(), 2);
        assert_eq!(ratios[1].tps_pgwolf_over_direct, Some(0.75));
        let variants = variants(&summary);
        let per_target: Vec<_> = variants
            .iter()
            .map(|v| (v.target, v.base.as_str(), v.tps_over_base))
            .collect();
        assert_eq!(
            per_target,
            [
                (TargetKind::Pgbouncer, "tcp", Some(1.1)),
                (TargetKind::Pgwolf, "tcp", Some(1.5)),
            ]
        );
    }
}
