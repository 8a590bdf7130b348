//! The admin console (database `pgwolf`): who gets in, PAUSE/RESUME, and
//! errors. (SWITCHOVER is exercised against Patroni in ha.rs.)

use pgwolf_tests::{
    try_connect, within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER,
};
use std::time::Duration;
use tokio_postgres::SimpleQueryMessage;

async fn fixture(access: &str) -> Fixture {
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&format!("{access} = [\"{APP_USER}\"]"));
    Fixture::with(opts).await
}

async fn console(fx: &Fixture, db: &str) -> tokio_postgres::Client {
    try_connect(fx.port(), APP_USER, APP_PASSWORD, db)
        .await
        .expect("admin console login")
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_transactions_and_resume_releases_them() {
    let fx = fixture("admin_users").await;
    let app = fx.connect().await;
    let admin = console(&fx, "pgwolf").await;
    admin
        .simple_query(&format!("PAUSE {APP_DB}"))
        .await
        .unwrap();

    let waiting = tokio::spawn(async move {
        let r = app.query_one("SELECT 41 + 1", &[]).await;
        (r.map(|row| row.get::<_, i32>(0)), app)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a transaction ran during PAUSE");

    admin
        .simple_query(&format!("RESUME {APP_DB}"))
        .await
        .unwrap();
    let (r, _app) = within(10, "the paused transaction", waiting).await.unwrap();
    assert_eq!(r.expect("no error after RESUME"), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_the_transaction_in_flight() {
    let fx = fixture("admin_users").await;
    let app = fx.connect().await;
    app.batch_execute("BEGIN").await.unwrap();
    let admin = console(&fx, "pgbouncer").await;
    let pause = tokio::spawn(async move { admin.simple_query("PAUSE").await.map(|_| admin) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned with a transaction open"
    );
    app.batch_execute("COMMIT").await.unwrap();
    let admin = within(10, "PAUSE after COMMIT", pause)
        .await
        .unwrap()
        .unwrap();
    admin.simple_query("RESUME").await.unwrap();
    assert_eq!(
        app.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_users_may_not_pause_and_others_may_not_enter() {
    let fx = fixture("stats_users").await;
    let _app = fx.connect().await;
    let stats = console(&fx, "pgwolf").await;
    let rows = stats.simple_query("SHOW TOPOLOGY").await.unwrap();
    assert!(
        matches!(rows.last(), Some(SimpleQueryMessage::CommandComplete(0))),
        "no clusters configured"
    );
    let err = stats.simple_query("PAUSE").await.unwrap_err();
    assert_eq!(code(&err), "42501");
    let err = stats.simple_query("FROBNICATE").await.unwrap_err();
    assert_eq!(code(&err), "42601");
    let message = err.as_db_error().unwrap().message().to_string();
    assert!(message.contains("unknown admin command"), "{message}");
    // Still usable after errors.
    stats.simple_query("SHOW TOPOLOGY").await.unwrap();

    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let err = try_connect(fx.port(), APP_USER, APP_PASSWORD, "pgwolf")
        .await
        .expect_err("not in admin_users or stats_users");
    assert_eq!(code(&err), "28000");
    let err = try_connect(fx.port(), APP_USER, "wrong", "pgwolf")
        .await
        .expect_err("wrong password");
    assert_eq!(code(&err), "28P01");
}

/// A SHOW's rows as column → value maps.
async fn show(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    pgwolf_tests::clients::simple_rows(c, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn setting(c: &tokio_postgres::Client, key: &str) -> String {
    show(c, "SHOW CONFIG")
        .await
        .into_iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in SHOW CONFIG"))["value"]
        .clone()
}

/// SET changes a reloadable setting and refuses the rest with a reason,
/// leaving the running config as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_changes_reloadable_settings_only() {
    let fx = fixture("admin_users").await;
    let admin = console(&fx, "pgwolf").await;
    admin
        .simple_query("SET default_pool_size = 7")
        .await
        .unwrap();
    assert_eq!(setting(&admin, "default_pool_size").await, "7");
    admin
        .simple_query("SET query_wait_timeout = '3s'")
        .await
        .unwrap();
    assert_eq!(setting(&admin, "query_wait_timeout").await, "3s");

    for (sql, want) in [
        ("SET listen = '0.0.0.0:1'", "55P02"),
        ("SET no_such_setting = 1", "42704"),
        ("SET default_pool_size", "42601"),
        ("SET default_pool_size = 'many'", "22023"),
    ] {
        let e = admin.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql}: {e}");
    }
    assert_eq!(setting(&admin, "default_pool_size").await, "7");
    // Stats users may look, not set.
    let fx = fixture("stats_users").await;
    let stats = console(&fx, "pgwolf").await;
    let e = stats
        .simple_query("SET default_pool_size = 3")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
}

/// SHOW STATE follows PAUSE/RESUME; SHOW PREPARED counts a pool's
/// prepared-statement cache; SHUTDOWN ends the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_prepared_and_shutdown() {
    let mut fx = fixture("admin_users").await;
    let admin = console(&fx, "pgwolf").await;
    let app = try_connect(fx.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    let state = |rows: Vec<std::collections::BTreeMap<String, String>>| {
        rows.into_iter()
            .map(|r| (r["key"].clone(), r["value"].clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let s = state(show(&admin, "SHOW STATE").await);
    assert_eq!((s["active"].as_str(), s["paused"].as_str()), ("yes", "no"));
    admin.simple_query("PAUSE").await.unwrap();
    let s = state(show(&admin, "SHOW STATE").await);
    assert_eq!((s["active"].as_str(), s["paused"].as_str()), ("no", "yes"));
    admin.simple_query("RESUME").await.unwrap();
    assert_eq!(state(show(&admin, "SHOW STATE").await)["paused"], "no");

    // tokio-postgres prepares a named statement per query: the first use
    // of a text is a miss, its reuse on the pool's server a hit.
    let stmt = app.prepare("SELECT $1::int + 1").await.unwrap();
    for i in 0..3 {
        let v: i32 = app.query_one(&stmt, &[&i]).await.unwrap().get(0);
        assert_eq!(v, i + 1);
    }
    let again = app.prepare("SELECT $1::int + 1").await.unwrap();
    app.query_one(&again, &[&1]).await.unwrap();
    let prepared = show(&admin, "SHOW PREPARED").await;
    let pool = prepared
        .iter()
        .find(|r| r["database"] == APP_DB && r["user"] == APP_USER)
        .unwrap_or_else(|| panic!("{prepared:?}"));
    let n = |c: &str| pool[c].parse::<u64>().unwrap();
    assert!(n("misses") >= 1, "{pool:?}");
    assert!(n("hits") >= 1, "{pool:?}");
    assert_eq!(n("evictions"), 0, "{pool:?}");

    admin.simple_query("SHUTDOWN").await.unwrap();
    let status = fx
        .proxy
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("pgwolf exits after SHUTDOWN");
    assert!(status.success(), "{status:?}");
}

/// log_stats: one line per database each stats_period, PgBouncer's
/// format; log_connections and log_disconnections off: no line per login
/// or per client leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_lines_every_period_and_no_login_lines_when_asked() {
    let fx = Fixture::with(
        FixtureOptions::new(PoolMode::Transaction, 2)
            .setting("stats_period = \"1s\"")
            .setting("log_connections = false")
            .setting("log_disconnections = false"),
    )
    .await;
    let c = fx.connect().await;
    for _ in 0..20 {
        c.simple_query("SELECT 1").await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = fx.proxy.log();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("stats: appdb:") && !l.contains(" 0 xacts/s"))
        {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stats line with traffic:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        line.contains("queries/s") && line.contains("wait"),
        "{line}"
    );
    assert!(
        !fx.proxy.log().contains("client logged in"),
        "log_connections = false still logged a login"
    );
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fx.proxy.log().contains("client disconnected"),
        "log_disconnections = false still logged a client leaving"
    );
}
