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
