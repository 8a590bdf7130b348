//! The pgbench scenarios: which script, protocol and client count.
//!
//! Names are stable (they key the JSON, the CSV and `--only`). A scenario
//! marked `not_pgbouncer` skips PgBouncer: named prepared statements do not
//! survive transaction pooling in PgBouncer 1.18 (1.21 added that), so it
//! is reported "n/a (unsupported)" there; pgwolf manages them.

use crate::load::targets::TargetKind;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Stable key, e.g. `select-simple-c50`.
    pub name: &'static str,
    /// What pgbench is told beyond connection, clients and duration.
    pub args: &'static [&'static str],
    pub clients: u32,
    /// The script writes (TPC-B-like): vacuum and truncate before each run.
    pub writes: bool,
    /// PgBouncer 1.18 cannot run it (see the module docs).
    pub not_pgbouncer: bool,
    /// Part of the TPS-vs-clients plot (`-S`, simple protocol).
    pub plotted: bool,
}

impl Scenario {
    /// Whether this scenario runs against `target`. PgBouncer skips what it
    /// cannot do; the relay (one server connection per client, no pooling)
    /// runs only within the pool size and without `-C` (each connection a
    /// server login), where it stands where a pooler stands.
    pub fn runs_on(&self, target: TargetKind, pool_size: u32) -> bool {
        match target {
            TargetKind::Pgbouncer => !self.not_pgbouncer,
            TargetKind::Relay => self.clients <= pool_size && !self.args.contains(&"-C"),
            TargetKind::Direct | TargetKind::Pgwolf => true,
        }
    }

    /// The pgbench options as one would type them, e.g. `-S -M extended -c 50`.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        if parts.is_empty() {
            parts.push("TPC-B".to_string());
        }
        parts.push(format!("-c {}", self.clients));
        parts.join(" ")
    }
}

const fn select_simple(name: &'static str, clients: u32) -> Scenario {
    Scenario {
        name,
        args: &["-S"],
        clients,
        writes: false,
        not_pgbouncer: false,
        plotted: true,
    }
}

const fn tpcb(name: &'static str, clients: u32) -> Scenario {
    Scenario {
        name,
        args: &[],
        clients,
        writes: true,
        not_pgbouncer: false,
        plotted: false,
    }
}

/// The full set, in the order each round runs them.
pub fn full() -> Vec<Scenario> {
    vec![
        select_simple("select-simple-c10", 10),
        select_simple("select-simple-c50", 50),
        select_simple("select-simple-c200", 200),
        Scenario {
            name: "select-extended-c50",
            args: &["-S", "-M", "extended"],
            clients: 50,
            writes: false,
            not_pgbouncer: false,
            plotted: false,
        },
        Scenario {
            name: "select-prepared-c50",
            args: &["-S", "-M", "prepared"],
            clients: 50,
            writes: false,
            not_pgbouncer: true,
            plotted: false,
        },
        tpcb("tpcb-c50", 50),
        Scenario {
            name: "select-connect-c20",
            args: &["-C", "-S"],
            clients: 20,
            writes: false,
            not_pgbouncer: false,
            plotted: false,
        },
    ]
}

/// The CI smoke set: one read-only and one writing scenario.
pub fn smoke() -> Vec<Scenario> {
    vec![select_simple("select-simple-c10", 10), tpcb("tpcb-c10", 10)]
}

/// The scenarios whose name contains any of `only` (all when empty).
pub fn filter(all: Vec<Scenario>, only: &[String]) -> Vec<Scenario> {
    if only.is_empty() {
        return all;
    }
    all.into_iter()
        .filter(|s| only.iter().any(|o| s.name.contains(o.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_filter_by_substring() {
        let all = full();
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let picked = filter(full(), &["simple".to_string()]);
        assert_eq!(picked.len(), 3);
        assert!(filter(full(), &[]).len() == all.len());
    }

    #[test]
    fn the_relay_runs_only_where_it_holds_as_many_servers_as_a_pool() {
        let on_relay: Vec<_> = full()
            .into_iter()
            .filter(|s| s.runs_on(TargetKind::Relay, 20))
            .map(|s| s.name)
            .collect();
        assert_eq!(on_relay, ["select-simple-c10"]);
        let prepared = &full()[4];
        assert!(!prepared.runs_on(TargetKind::Pgbouncer, 20));
        assert!(prepared.runs_on(TargetKind::Pgwolf, 20));
    }

    #[test]
    fn labels_read_like_pgbench_options() {
        assert_eq!(full()[3].label(), "-S -M extended -c 50");
        assert_eq!(tpcb("t", 50).label(), "TPC-B -c 50");
    }
}
