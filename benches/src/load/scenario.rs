//! The pgbench scenarios: which script, protocol and client count.
//!
//! Names are stable (they key the JSON, the CSV and `--only`). A scenario
//! marked `not_pgbouncer` skips PgBouncer: named prepared statements do not
//! survive transaction pooling in PgBouncer 1.18 (1.21 added that), so it
//! is reported "n/a (unsupported)" there; pgwolf manages them.
//!
//! A [`Variant`] is a scenario run a second way, beside its base in every
//! round, so that the report can divide one by the other per target: the
//! proxies reaching PostgreSQL over its Unix socket instead of TCP, or
//! clients sending startup settings (`PGOPTIONS`). Selecting a variant with
//! `--only` selects its base too, since its rows mean nothing alone.

use crate::load::cluster::BENCH_DB;
use crate::load::targets::TargetKind;
use serde::{Deserialize, Serialize};

/// The proxies' second database entry: `bench` again, reached over
/// PostgreSQL's Unix socket instead of TCP. A database of its own (rather
/// than other proxies) keeps one proxy process per kind, so CPU and memory
/// are read from the same process for both paths.
pub const SOCKET_DB: &str = "bench_unix";

/// What the startup-settings variant puts in pgbench's environment: libpq
/// sends it as the `options` startup parameter.
pub const PGOPTIONS: &str = "-c statement_timeout=5s -c search_path=public";

/// How a scenario differs from its base; `Plain` is not a variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    #[default]
    Plain,
    /// The proxies' server connections go to PostgreSQL's Unix socket
    /// ([`SOCKET_DB`]). Direct is not run: pgbench's own connection would
    /// change too, and the base's direct row is the same run.
    ServerSocket,
    /// Clients send [`PGOPTIONS`]: PostgreSQL and pgwolf apply them,
    /// PgBouncer drops them (`ignore_startup_parameters` lists `options`).
    StartupOptions,
}

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
    pub variant: Variant,
    /// The scenario a variant is compared with (`None` for `Plain`).
    pub base: Option<&'static str>,
}

impl Scenario {
    /// Whether this scenario runs against `target`. PgBouncer skips what it
    /// cannot do; the relay (one server connection per client, no pooling)
    /// runs only within the pool size and without `-C` (each connection a
    /// server login), where it stands where a pooler stands.
    /// Variants are about the poolers (and direct for the startup settings,
    /// PostgreSQL's own cost of applying them); the relay runs none.
    pub fn runs_on(&self, target: TargetKind, pool_size: u32) -> bool {
        match target {
            TargetKind::Pgbouncer => !self.not_pgbouncer,
            TargetKind::Relay => {
                self.variant == Variant::Plain
                    && self.clients <= pool_size
                    && !self.args.contains(&"-C")
            }
            TargetKind::Direct => self.variant != Variant::ServerSocket,
            TargetKind::Pgwolf => true,
        }
    }

    /// The database pgbench names when it connects to `target`.
    pub fn database(&self, target: TargetKind) -> &'static str {
        match (self.variant, target) {
            (Variant::ServerSocket, TargetKind::Pgbouncer | TargetKind::Pgwolf) => SOCKET_DB,
            _ => BENCH_DB,
        }
    }

    /// `PGOPTIONS` for pgbench, if this scenario sends startup settings.
    pub fn pgoptions(&self) -> Option<&'static str> {
        (self.variant == Variant::StartupOptions).then_some(PGOPTIONS)
    }

    /// The pgbench options as one would type them, e.g. `-S -M extended -c 50`,
    /// and what a variant changes.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        if parts.is_empty() {
            parts.push("TPC-B".to_string());
        }
        parts.push(format!("-c {}", self.clients));
        let label = parts.join(" ");
        match self.variant {
            Variant::Plain => label,
            Variant::ServerSocket => format!("{label}, server over Unix socket"),
            // The settings themselves are in the report's note: they would
            // make every table twice as wide.
            Variant::StartupOptions => format!("{label}, startup settings (PGOPTIONS)"),
        }
    }

    /// `base` run another way: same script, clients and plot exclusion.
    fn variant_of(base: Scenario, name: &'static str, variant: Variant) -> Scenario {
        Scenario {
            name,
            plotted: false,
            variant,
            base: Some(base.name),
            ..base
        }
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
        variant: Variant::Plain,
        base: None,
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
        variant: Variant::Plain,
        base: None,
    }
}

/// The server-socket and startup-settings variants of `base`, named
/// `socket` and `options`. A variant's name does not contain its base's, so
/// that `--only select-simple-c50` keeps selecting just that scenario.
fn variants(base: Scenario, [socket, options]: [&'static str; 2]) -> [Scenario; 2] {
    [
        Scenario::variant_of(base.clone(), socket, Variant::ServerSocket),
        Scenario::variant_of(base, options, Variant::StartupOptions),
    ]
}

/// The full set, in the order each round runs them (a variant right after
/// its base, so that its rows sit next to the base's).
pub fn full() -> Vec<Scenario> {
    let [socket, options] = variants(
        select_simple("select-simple-c50", 50),
        ["server-socket-c50", "startup-options-c50"],
    );
    vec![
        select_simple("select-simple-c10", 10),
        select_simple("select-simple-c50", 50),
        socket,
        options,
        select_simple("select-simple-c200", 200),
        Scenario {
            name: "select-extended-c50",
            args: &["-S", "-M", "extended"],
            clients: 50,
            writes: false,
            not_pgbouncer: false,
            plotted: false,
            variant: Variant::Plain,
            base: None,
        },
        Scenario {
            name: "select-prepared-c50",
            args: &["-S", "-M", "prepared"],
            clients: 50,
            writes: false,
            not_pgbouncer: true,
            plotted: false,
            variant: Variant::Plain,
            base: None,
        },
        tpcb("tpcb-c50", 50),
        Scenario {
            name: "select-connect-c20",
            args: &["-C", "-S"],
            clients: 20,
            writes: false,
            not_pgbouncer: false,
            plotted: false,
            variant: Variant::Plain,
            base: None,
        },
    ]
}

/// The CI smoke set: one read-only and one writing scenario, and the
/// read-only one's variants once, so that both new paths are exercised.
pub fn smoke() -> Vec<Scenario> {
    let [socket, options] = variants(
        select_simple("select-simple-c10", 10),
        ["server-socket-c10", "startup-options-c10"],
    );
    vec![
        select_simple("select-simple-c10", 10),
        socket,
        options,
        tpcb("tpcb-c10", 10),
    ]
}

/// The scenarios whose name contains any of `only` (all when empty), and
/// the base of every variant selected, in `all`'s order.
pub fn filter(all: Vec<Scenario>, only: &[String]) -> Vec<Scenario> {
    if only.is_empty() {
        return all;
    }
    let picked: Vec<&'static str> = all
        .iter()
        .filter(|s| only.iter().any(|o| s.name.contains(o.as_str())))
        .flat_map(|s| [Some(s.name), s.base])
        .flatten()
        .collect();
    all.into_iter()
        .filter(|s| picked.contains(&s.name))
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
    fn a_variant_brings_its_base_and_sits_next_to_it() {
        let names = |only: &str| -> Vec<&str> {
            filter(full(), &[only.to_string()])
                .iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(names("socket"), ["select-simple-c50", "server-socket-c50"]);
        assert_eq!(
            names("options"),
            ["select-simple-c50", "startup-options-c50"]
        );
        assert_eq!(names("select-simple-c50"), ["select-simple-c50"]);
        let smoke_names: Vec<_> = smoke().iter().map(|s| s.name).collect();
        assert_eq!(
            smoke_names,
            [
                "select-simple-c10",
                "server-socket-c10",
                "startup-options-c10",
                "tpcb-c10"
            ]
        );
    }

    #[test]
    fn variants_change_the_path_or_the_environment_only() {
        let all = full();
        let socket = all.iter().find(|s| s.name == "server-socket-c50").unwrap();
        assert_eq!(socket.database(TargetKind::Pgwolf), SOCKET_DB);
        assert_eq!(socket.database(TargetKind::Pgbouncer), SOCKET_DB);
        assert!(!socket.runs_on(TargetKind::Direct, 20));
        assert_eq!(socket.pgoptions(), None);
        assert_eq!(socket.label(), "-S -c 50, server over Unix socket");
        let options = all
            .iter()
            .find(|s| s.name == "startup-options-c50")
            .unwrap();
        assert_eq!(options.database(TargetKind::Pgbouncer), BENCH_DB);
        assert!(options.runs_on(TargetKind::Direct, 20));
        assert_eq!(options.pgoptions(), Some(PGOPTIONS));
        assert_eq!(options.label(), "-S -c 50, startup settings (PGOPTIONS)");
        let smoke = smoke();
        assert!(smoke
            .iter()
            .all(|s| s.variant == Variant::Plain || !s.runs_on(TargetKind::Relay, 20)));
    }

    #[test]
    fn the_relay_runs_only_where_it_holds_as_many_servers_as_a_pool() {
        let on_relay: Vec<_> = full()
            .into_iter()
            .filter(|s| s.runs_on(TargetKind::Relay, 20))
            .map(|s| s.name)
            .collect();
        assert_eq!(on_relay, ["select-simple-c10"]);
        let all = full();
        let prepared = all
            .iter()
            .find(|s| s.name == "select-prepared-c50")
            .unwrap();
        assert!(!prepared.runs_on(TargetKind::Pgbouncer, 20));
        assert!(prepared.runs_on(TargetKind::Pgwolf, 20));
    }

    #[test]
    fn labels_read_like_pgbench_options() {
        let all = full();
        let extended = all
            .iter()
            .find(|s| s.name == "select-extended-c50")
            .unwrap();
        assert_eq!(extended.label(), "-S -M extended -c 50");
        assert_eq!(tpcb("t", 50).label(), "TPC-B -c 50");
    }
}
