//! PgBouncer's SHOW commands, with the column names and types of PgBouncer
//! 1.18 (Debian 12's), so exporters and scripts written for it parse them.
//! Values pgwolf has no equivalent for (cancel requests in flight, TLS,
//! DNS) are 0.

use super::rows::{self, INT4, NUMERIC, TEXT};
use crate::app::App;
use crate::config::{Config, PoolMode};
use crate::pool::history::{totals, History};
use crate::pool::Pool;
use bytes::BytesMut;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn mode_name(m: PoolMode) -> &'static str {
    match m {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
        PoolMode::Statement => "statement",
    }
}

fn sorted_pools(app: &App) -> Vec<Pool> {
    let mut pools = app.pools();
    pools.sort_by(|a, b| (&a.key().db, &a.key().user).cmp(&(&b.key().db, &b.key().user)));
    pools
}

pub fn pools(app: &App, out: &mut BytesMut) {
    let cols = [
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT4),
        ("cl_waiting", INT4),
        ("cl_active_cancel_req", INT4),
        ("cl_waiting_cancel_req", INT4),
        ("sv_active", INT4),
        ("sv_active_cancel", INT4),
        ("sv_being_canceled", INT4),
        ("sv_idle", INT4),
        ("sv_used", INT4),
        ("sv_tested", INT4),
        ("sv_login", INT4),
        ("maxwait", INT4),
        ("maxwait_us", INT4),
        ("pool_mode", TEXT),
    ];
    rows::typed_description(out, &cols);
    let pools = sorted_pools(app);
    for p in &pools {
        let st = p.stats();
        let waiting = st.waiters.count.load(Relaxed);
        let clients = st.clients.load(Relaxed);
        let wait = st.waiters.longest();
        rows::data_row(
            out,
            &[
                s(&p.key().db),
                s(&p.key().user),
                s(clients.saturating_sub(waiting)),
                s(waiting),
                s(0),
                s(0),
                s(p.active()),
                s(0),
                s(0),
                s(p.idle_count()),
                s(0),
                s(0),
                s(0),
                s(wait.as_secs()),
                s(wait.subsec_micros()),
                s(mode_name(p.settings().mode)),
            ],
        );
    }
    rows::command_complete(out, "SHOW");
}

pub fn databases(app: &App, out: &mut BytesMut) {
    let cols = [
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT4),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT4),
        ("min_pool_size", INT4),
        ("reserve_pool", INT4),
        ("pool_mode", TEXT),
        ("max_connections", INT4),
        ("current_connections", INT4),
        ("paused", INT4),
        ("disabled", INT4),
    ];
    rows::typed_description(out, &cols);
    let cfg = app.config.load();
    let pools = app.pools();
    for (name, d) in &cfg.databases {
        let mine: Vec<&Pool> = pools.iter().filter(|p| p.key().db == *name).collect();
        let open: usize = mine.iter().map(|p| p.open_count()).sum();
        let paused = !mine.is_empty() && mine.iter().all(|p| p.is_paused());
        // A cluster's database has no one host: show where writes go now.
        let (host, port) = match d.cluster.as_ref().and_then(|c| app.cluster_named(c)) {
            Some(c) => match c.current().primary() {
                Some(m) => (Some(m.host.clone()), Some(m.port.to_string())),
                None => (None, None),
            },
            None => (s(&d.host), s(d.port)),
        };
        rows::data_row(
            out,
            &[
                s(name),
                host,
                port,
                s(d.dbname.as_deref().unwrap_or(name)),
                d.user.clone(),
                s(d.pool_size.unwrap_or(cfg.default_pool_size)),
                s(d.min_pool_size.unwrap_or(cfg.min_pool_size)),
                s(d.reserve_pool_size.unwrap_or(cfg.reserve_pool_size)),
                d.pool_mode.map(|m| mode_name(m).to_string()),
                s(d.max_db_connections.unwrap_or(cfg.max_db_connections)),
                s(open),
                s(u8::from(paused)),
                s(0),
            ],
        );
    }
    rows::command_complete(out, "SHOW");
}

pub fn users(app: &App, out: &mut BytesMut) {
    rows::typed_description(out, &[("name", TEXT), ("pool_mode", TEXT)]);
    let cfg = app.config.load();
    let auth = app.auth.load();
    let mut names: Vec<String> = auth.names().into_iter().map(String::from).collect();
    names.extend(cfg.users.keys().cloned());
    names.sort();
    names.dedup();
    for n in names {
        let mode = cfg
            .users
            .get(&n)
            .and_then(|u| u.pool_mode)
            .map(|m| mode_name(m).to_string());
        rows::data_row(out, &[Some(n), mode]);
    }
    rows::command_complete(out, "SHOW");
}

pub fn lists(app: &App, out: &mut BytesMut) {
    rows::typed_description(out, &[("list", TEXT), ("items", INT4)]);
    let cfg = app.config.load();
    let pools = app.pools();
    let clients: u32 = pools.iter().map(|p| p.stats().clients.load(Relaxed)).sum();
    let servers: usize = pools.iter().map(Pool::open_count).sum();
    let items: [(&str, usize); 12] = [
        ("databases", cfg.databases.len()),
        ("users", app.auth.load().len()),
        ("pools", pools.len()),
        ("free_clients", 0),
        ("used_clients", clients as usize),
        ("login_clients", 0),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", app.dns.len()),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    for (k, v) in items {
        rows::data_row(out, &[s(k), s(v)]);
    }
    rows::command_complete(out, "SHOW");
}

pub fn version(out: &mut BytesMut) {
    rows::typed_description(out, &[("version", TEXT)]);
    rows::data_row(out, &[s(format!("pgwolf {}", env!("CARGO_PKG_VERSION")))]);
    rows::command_complete(out, "SHOW");
}

pub fn state(app: &App, out: &mut BytesMut) {
    rows::typed_description(out, &[("key", TEXT), ("value", TEXT)]);
    let pools = app.pools();
    let paused = !pools.is_empty() && pools.iter().all(Pool::is_paused);
    let yes_no = |b: bool| s(if b { "yes" } else { "no" });
    rows::data_row(
        out,
        &[s("active"), yes_no(!paused && !app.shutdown.is_cancelled())],
    );
    rows::data_row(out, &[s("paused"), yes_no(paused)]);
    rows::data_row(out, &[s("suspended"), yes_no(false)]);
    rows::command_complete(out, "SHOW");
}

/// Settings that need a restart (the rest apply on RELOAD or SET).
pub const RESTART_ONLY: [&str; 3] = ["listen", "worker_threads", "http_listen"];

pub fn config(app: &App, out: &mut BytesMut) {
    let cols = [
        ("key", TEXT),
        ("value", TEXT),
        ("default", TEXT),
        ("changeable", TEXT),
    ];
    rows::typed_description(out, &cols);
    let now = settings(&app.config.load());
    let defaults = settings(&Config::default());
    for (k, v) in &now {
        let changeable = if RESTART_ONLY.contains(&k.as_str()) {
            "no"
        } else {
            "yes"
        };
        rows::data_row(out, &[s(k), s(v), defaults.get(k).cloned(), s(changeable)]);
    }
    rows::command_complete(out, "SHOW");
}

/// The global settings as text, the way the config file spells them.
pub fn settings(cfg: &Config) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let Ok(toml::Value::Table(t)) = toml::Value::try_from(cfg) else {
        return m;
    };
    for (k, v) in t {
        let text = match v {
            toml::Value::Table(_) => continue,
            toml::Value::String(s) => s,
            toml::Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        m.insert(k, text);
    }
    m
}

pub fn stats(app: &App, history: &History, which: &str, out: &mut BytesMut) {
    let totals_cols = [
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
    ];
    let cols: Vec<String> = match which {
        "STATS" => std::iter::once("database".to_string())
            .chain(
                [
                    "total_xact_count",
                    "total_query_count",
                    "total_received",
                    "total_sent",
                    "total_xact_time",
                    "total_query_time",
                    "total_wait_time",
                    "avg_xact_count",
                    "avg_query_count",
                    "avg_recv",
                    "avg_sent",
                    "avg_xact_time",
                    "avg_query_time",
                    "avg_wait_time",
                    // PgBouncer's name before 1.8 for total_query_count:
                    // Debian 12's prometheus-pgbouncer-exporter (1.7)
                    // still reads it (and fails on PgBouncer 1.18 itself).
                    // Last, so positional readers see 1.18's columns.
                    "total_requests",
                ]
                .map(String::from),
            )
            .collect(),
        _ => std::iter::once("database".to_string())
            .chain(totals_cols.map(String::from))
            .collect(),
    };
    let typed: Vec<(&str, u32)> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), if i == 0 { TEXT } else { NUMERIC }))
        .collect();
    rows::typed_description(out, &typed);
    for (db, t) in totals(&app.pools()) {
        let total = [
            t.xacts, t.queries, t.received, t.sent, t.xact_us, t.query_us, t.wait_us,
        ];
        let avg = history.window(&db, &t);
        let values: Vec<u64> = match which {
            "STATS" => total
                .iter()
                .chain(avg.iter())
                .chain([t.queries].iter())
                .copied()
                .collect(),
            "STATS_TOTALS" => total.to_vec(),
            _ => avg.to_vec(),
        };
        let mut row = vec![Some(db)];
        row.extend(values.into_iter().map(s));
        rows::data_row(out, &row);
    }
    rows::command_complete(out, "SHOW");
}

pub fn prepared(app: &App, out: &mut BytesMut) {
    let cols = [
        ("database", TEXT),
        ("user", TEXT),
        ("hits", NUMERIC),
        ("misses", NUMERIC),
        ("evictions", NUMERIC),
    ];
    rows::typed_description(out, &cols);
    for p in sorted_pools(app) {
        let c = &p.stats().prepared;
        rows::data_row(
            out,
            &[
                s(&p.key().db),
                s(&p.key().user),
                s(c.hits.load(Relaxed)),
                s(c.misses.load(Relaxed)),
                s(c.evictions.load(Relaxed)),
            ],
        );
    }
    rows::command_complete(out, "SHOW");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_as_the_config_spells_them() {
        let m = settings(&Config::default());
        assert_eq!(m["default_pool_size"], "20");
        assert_eq!(m["listen"], "127.0.0.1:6432");
        assert_eq!(m["query_wait_timeout"], "2m");
        assert!(!m.contains_key("databases"));
    }
}
