//! The report as markdown (results.md, and what `loadbench` prints): the
//! header, the table of medians, the ratios, the variants against their
//! base scenarios, the idle-client table and the notes.

use crate::load::report::Report;
use crate::load::scenario::{Variant, PGOPTIONS, SOCKET_DB};
use std::fmt::Write as _;

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
    variants_table(&mut md, r);
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

/// Each variant against its base, per target, with what its probe saw.
fn variants_table(md: &mut String, r: &Report) {
    if r.variants.is_empty() {
        return;
    }
    md.push_str(
        "\nEach variant against its base scenario, same target, same run (variant median / base median):\n\n\
         | variant | against | target | TPS | CPU µs/tx | p99 | a client saw |\n\
         |---|---|---|--:|--:|--:|---|\n",
    );
    for row in &r.variants {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | {} | {} | {} | {} |",
            row.label,
            row.base_label,
            row.target.name(),
            num(row.tps_over_base, 2),
            num(row.cpu_over_base, 2),
            num(row.p99_over_base, 2),
            row.seen.as_deref().unwrap_or("–")
        );
    }
    // What each variant is, only for those in this report.
    md.push('\n');
    let has = |v: Variant| r.variants.iter().any(|row| row.variant == v);
    if has(Variant::ServerSocket) {
        let _ = write!(
            md,
            "Server over Unix socket: the proxies' `{SOCKET_DB}` entry, whose `host` is PostgreSQL's \
             socket dir; direct is not run (its row would be the base's). "
        );
    }
    if has(Variant::StartupOptions) {
        let _ = write!(
            md,
            "Startup settings: pgbench runs with `PGOPTIONS='{PGOPTIONS}'`; PostgreSQL and pgwolf \
             apply them, PgBouncer drops them (`ignore_startup_parameters` lists `options`). "
        );
    }
    md.push_str(
        "\"A client saw\": one more client through the target after each run \
         (`inet_server_addr()`, or the settings in force).\n",
    );
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
