//! The machine and software a benchmark ran on, for the report's header
//! and the plot's title.

use crate::load::measure;
use crate::load::proc;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// Start of the run, UTC, RFC 3339.
    pub started_utc: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_gib: f64,
    pub kernel: String,
    pub postgres: String,
    pub pgbench: String,
    pub pgbouncer: String,
    pub pgwolf: String,
    /// `git describe --always --dirty` of the workspace, if it is a checkout.
    pub pgwolf_commit: String,
    pub load_avg_start: Option<f64>,
    pub compilers_at_start: u32,
}

impl Machine {
    pub fn probe(pgwolf_bin: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            started_utc: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            postgres: proc::version_of(&proc::pg_bin("postgres")),
            pgbench: proc::version_of(&proc::pg_bin("pgbench")),
            pgbouncer: proc::version_of(&proc::pgbouncer_bin()),
            pgwolf: proc::version_of(pgwolf_bin),
            pgwolf_commit: git_describe(),
            load_avg_start: measure::load_average(),
            compilers_at_start: measure::compilers_running(),
        }
    }

    /// One line for the plot title: "2 × AMD EPYC, PostgreSQL 15.18, PgBouncer 1.18.0".
    pub fn one_line(&self) -> String {
        format!(
            "{} × {}, {} GiB, PostgreSQL {}, PgBouncer {}, pgwolf {}",
            self.cpus,
            self.cpu_model,
            self.mem_total_gib,
            last_word_version(&self.postgres),
            last_word_version(&self.pgbouncer),
            self.pgwolf_commit
        )
    }
}

/// "postgres (PostgreSQL) 15.18 (Debian ...)" → "15.18"; "PgBouncer 1.18.0" → "1.18.0".
fn last_word_version(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or(text)
        .to_string()
}

fn git_describe() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["describe", "--always", "--dirty"]);
    match proc::run_bounded(&mut cmd, Duration::from_secs(10), &Default::default()) {
        Ok((out, false)) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_picked_from_version_lines() {
        assert_eq!(
            last_word_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            "15.18"
        );
        assert_eq!(last_word_version("PgBouncer 1.18.0"), "1.18.0");
        assert_eq!(last_word_version("unknown"), "unknown");
    }
}
