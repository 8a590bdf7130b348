//! `/metrics`: Prometheus text format, built at scrape time from the
//! pools' atomic counters (nothing is registered per pool, and nothing is
//! labelled per client: labels are database and user, or cluster and
//! member), plus process metrics.

use crate::app::App;
use crate::topology::Role;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, Encoder, GaugeVec, Opts, TextEncoder};
use std::sync::atomic::Ordering::Relaxed;

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> CounterVec {
    CounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

pub fn render(app: &App) -> String {
    let pool = ["database", "user"];
    let state = ["database", "user", "state"];
    let clients = gauge(
        "pgwolf_pool_clients",
        "Clients logged in to the pool, by state.",
        &state,
    );
    let servers = gauge(
        "pgwolf_pool_servers",
        "Server connections of the pool, by state.",
        &state,
    );
    let max_wait = gauge(
        "pgwolf_pool_max_wait_seconds",
        "Longest current wait for a server connection.",
        &pool,
    );
    let paused = gauge(
        "pgwolf_pool_paused",
        "1 while the pool is paused (PAUSE, switchover).",
        &pool,
    );
    let xacts = counter(
        "pgwolf_transactions_total",
        "Transactions (server connection check-outs) completed.",
        &pool,
    );
    let queries = counter(
        "pgwolf_queries_total",
        "Requests (Query, Sync, FunctionCall) forwarded.",
        &pool,
    );
    let received = counter(
        "pgwolf_client_bytes_received_total",
        "Bytes forwarded from clients to servers.",
        &pool,
    );
    let sent = counter(
        "pgwolf_client_bytes_sent_total",
        "Bytes forwarded from servers to clients.",
        &pool,
    );
    let xact_time = counter(
        "pgwolf_transaction_seconds_total",
        "Time server connections were checked out.",
        &pool,
    );
    let query_time = counter(
        "pgwolf_query_seconds_total",
        "Time servers spent answering requests.",
        &pool,
    );
    let wait_time = counter(
        "pgwolf_wait_seconds_total",
        "Time clients waited for a server connection.",
        &pool,
    );
    let failover_wait = counter("pgwolf_failover_wait_seconds_total", "Time new connections waited for a member of their role (no primary known, member unreachable).", &pool);
    let connects = counter(
        "pgwolf_server_connects_total",
        "Server connections opened.",
        &pool,
    );
    let connect_failures = counter(
        "pgwolf_server_connect_failures_total",
        "Server connections that failed to open.",
        &pool,
    );
    let check_failures = counter(
        "pgwolf_server_check_failures_total",
        "Idle server connections closed for failing server_check_query (closed, erred, or silent past server_check_timeout).",
        &pool,
    );
    let pool_size = gauge(
        "pgwolf_pool_size",
        "Server connections the pool may open (its pool_size).",
        &pool,
    );
    let prepared = counter(
        "pgwolf_prepared_statements_total",
        "Managed prepared statements: cache hits, misses and evictions on server connections.",
        &["database", "user", "result"],
    );

    for p in app.pools() {
        let k = p.key();
        let (db, user) = (k.db.as_str(), k.user.as_str());
        let st = p.stats();
        let waiting = st.waiters.count.load(Relaxed);
        let logged_in = st.clients.load(Relaxed);
        clients
            .with_label_values(&[db, user, "active"])
            .set(logged_in.saturating_sub(waiting).into());
        clients
            .with_label_values(&[db, user, "waiting"])
            .set(waiting.into());
        servers
            .with_label_values(&[db, user, "active"])
            .set(p.active().into());
        servers
            .with_label_values(&[db, user, "idle"])
            .set(p.idle_count() as f64);
        max_wait
            .with_label_values(&[db, user])
            .set(st.waiters.longest().as_secs_f64());
        paused
            .with_label_values(&[db, user])
            .set(f64::from(u8::from(p.is_paused())));
        pool_size
            .with_label_values(&[db, user])
            .set(p.settings().size.into());
        let add = |c: &CounterVec, v: u64| c.with_label_values(&[db, user]).inc_by(v as f64);
        let secs =
            |c: &CounterVec, us: u64| c.with_label_values(&[db, user]).inc_by(us as f64 / 1e6);
        add(&xacts, st.transactions.load(Relaxed));
        add(&queries, st.queries.load(Relaxed));
        add(&received, st.bytes_received.load(Relaxed));
        add(&sent, st.bytes_sent.load(Relaxed));
        secs(&xact_time, st.xact_us.load(Relaxed));
        secs(&query_time, st.query_us.load(Relaxed));
        secs(&wait_time, st.waiters.total_us.load(Relaxed));
        secs(&failover_wait, st.failover_wait_us.load(Relaxed));
        add(&connects, st.connects.load(Relaxed));
        add(&connect_failures, st.connect_failures.load(Relaxed));
        add(&check_failures, st.check_failures.load(Relaxed));
        let c = &st.prepared;
        for (result, v) in [
            ("hit", &c.hits),
            ("miss", &c.misses),
            ("eviction", &c.evictions),
        ] {
            prepared
                .with_label_values(&[db, user, result])
                .inc_by(v.load(Relaxed) as f64);
        }
    }

    let auth_failures = counter(
        "pgwolf_auth_failures_total",
        "Client logins refused for a wrong password or unknown user.",
        &[],
    );
    auth_failures
        .with_label_values::<&str>(&[])
        .inc_by(app.auth_failures.load(Relaxed) as f64);
    let members = gauge(
        "pgwolf_cluster_member_role",
        "1 for each cluster member's current role.",
        &["cluster", "member", "role"],
    );
    let primary_known = gauge(
        "pgwolf_cluster_primary_known",
        "1 while the cluster has a primary.",
        &["cluster"],
    );
    let changes = counter(
        "pgwolf_cluster_primary_changes_total",
        "Times the cluster's primary changed.",
        &["cluster"],
    );
    let changed_at = gauge(
        "pgwolf_cluster_primary_changed_timestamp_seconds",
        "When the cluster's primary last changed (Unix time).",
        &["cluster"],
    );
    let switchovers = counter(
        "pgwolf_switchovers_total",
        "Planned switchovers run by pgwolf (SWITCHOVER), by outcome.",
        &["cluster", "outcome"],
    );
    for c in app.clusters() {
        let t = c.current();
        for m in &t.members {
            let role = match m.role {
                Role::Primary => "primary",
                Role::Replica => "replica",
                Role::Unknown => "unknown",
            };
            members
                .with_label_values(&[&c.name, &m.name, role])
                .set(1.0);
        }
        primary_known
            .with_label_values(&[&c.name])
            .set(f64::from(u8::from(t.primary().is_some())));
        changes
            .with_label_values(&[&c.name])
            .inc_by(t.primary_changes as f64);
        if let Some(at) = t.primary_changed_at {
            changed_at.with_label_values(&[&c.name]).set(unix(at));
        }
        for (i, outcome) in ["done", "failed"].into_iter().enumerate() {
            switchovers
                .with_label_values(&[&c.name, outcome])
                .inc_by(c.switchovers[i].load(Relaxed) as f64);
        }
    }
    let expiry = gauge(
        "pgwolf_tls_certificate_expiry_timestamp_seconds",
        "When pgwolf's own certificate expires (Unix time), by setting.",
        &["setting"],
    );
    for (setting, at) in &app.tls.load().expiry {
        expiry.with_label_values(&[setting]).set(unix(*at));
    }

    let mut families: Vec<MetricFamily> = Vec::new();
    let collectors: [&dyn Collector; 24] = [
        &pool_size,
        &changed_at,
        &switchovers,
        &expiry,
        &clients,
        &servers,
        &max_wait,
        &paused,
        &xacts,
        &queries,
        &received,
        &sent,
        &xact_time,
        &query_time,
        &wait_time,
        &failover_wait,
        &connects,
        &connect_failures,
        &check_failures,
        &prepared,
        &auth_failures,
        &members,
        &primary_known,
        &changes,
    ];
    for c in collectors {
        families.extend(c.collect());
    }
    families.extend(prometheus::process_collector::ProcessCollector::for_self().collect());
    // A family with no series (no pool yet) is an error to the encoder.
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(error = %e, "encoding metrics");
        return format!("# encoding failed: {e}\n");
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    histograms(app, &mut text);
    text
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Label values in the text format: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The duration histograms, written in the text format directly: their
/// buckets are the pools' own atomics.
fn histograms(app: &App, out: &mut String) {
    let pools = app.pools();
    if pools.is_empty() {
        return;
    }
    for (name, help, pick) in [
        (
            "pgwolf_transaction_duration_seconds",
            "Transactions: server connection check-out to release.",
            (|s: &crate::pool::Stats| &s.xact_hist)
                as fn(&crate::pool::Stats) -> &crate::pool::histogram::Histogram,
        ),
        (
            "pgwolf_query_duration_seconds",
            "Requests: a Query, or a batch up to Sync, to its ReadyForQuery.",
            |s: &crate::pool::Stats| &s.query_hist,
        ),
        (
            "pgwolf_wait_duration_seconds",
            "Waits of clients for a server connection (pool full or paused), each that waited.",
            |s: &crate::pool::Stats| &s.waiters.hist,
        ),
        (
            "pgwolf_failover_wait_duration_seconds",
            "Waits of new server connections for a member of their role, each that waited.",
            |s: &crate::pool::Stats| &s.failover_hist,
        ),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for p in &pools {
            let labels = format!(
                "database=\"{}\",user=\"{}\"",
                escape(&p.key().db),
                escape(&p.key().user)
            );
            pick(p.stats()).render(name, &labels, out);
        }
    }
}
