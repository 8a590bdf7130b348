//! Failure and lifecycle: PostgreSQL going away and coming back, SIGTERM
//! draining, SIGHUP reloading.

use pgwolf_tests::clients::{connect, simple_value, sqlstate};
use pgwolf_tests::time::eventually;
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode, APP_PASSWORD, APP_USER};
use std::time::{Duration, Instant};

fn is_connection_class(err: &tokio_postgres::Error) -> bool {
    matches!(sqlstate(err), Some(code) if code.starts_with("08") || code == "57P01")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_gives_class_08_then_recovers() {
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting("server_connect_timeout = \"2s\"")
        .setting("query_wait_timeout = \"5s\"");
    let mut fx = Fixture::with(opts).await;
    let client = fx.connect().await;
    simple_value(&client, "SELECT 1").await.unwrap();

    fx.pg.stop();
    let started = Instant::now();
    // A new client: refused at login or at its first query, with class 08.
    let result = within(30, "client while PostgreSQL is down", async {
        let c = fx.try_connect().await?;
        simple_value(&c, "SELECT 1").await
    })
    .await;
    let err = result.expect_err("query succeeded with PostgreSQL stopped");
    assert!(
        sqlstate(&err).is_some_and(|c| c.starts_with("08")),
        "expected SQLSTATE class 08, got {:?}: {err:?}",
        sqlstate(&err)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "error took {:?}",
        started.elapsed()
    );
    // The connected client also gets a clear error, not a hang.
    let err = within(
        30,
        "connected client while PostgreSQL is down",
        simple_value(&client, "SELECT 1"),
    )
    .await
    .expect_err("query succeeded with PostgreSQL stopped");
    assert!(is_connection_class(&err) || client.is_closed(), "{err:?}");

    fx.pg.restart();
    let recovered = eventually(Duration::from_secs(20), || async {
        let c = fx.try_connect().await.ok()?;
        simple_value(&c, "SELECT 42").await.ok()?
    })
    .await;
    assert_eq!(
        recovered.as_deref(),
        Some("42"),
        "new clients did not recover after PostgreSQL came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_in_flight_when_server_stops_gets_an_error() {
    let mut fx = Fixture::new(PoolMode::Transaction, 2).await;
    let client = fx.connect().await;
    let running =
        tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    fx.pg.stop();
    let result = within(10, "query whose server stopped", running)
        .await
        .unwrap();
    let err = result.expect_err("pg_sleep(30) completed although its server stopped");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    // PostgreSQL's own 57P01 passed through, or pgwolf's class 08, or a closed connection.
    assert!(is_connection_class(&err) || err.is_closed(), "{err:?}");
    fx.pg.restart();
    let back = eventually(Duration::from_secs(20), || async {
        let c = fx.try_connect().await.ok()?;
        simple_value(&c, "SELECT 1").await.ok().map(|_| ())
    })
    .await;
    assert!(back.is_some(), "no recovery after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_open_transaction_finish_then_exits() {
    let opts = FixtureOptions::new(PoolMode::Transaction, 2).setting("shutdown_timeout = \"10s\"");
    let mut fx = Fixture::with(opts).await;
    let client = fx.connect().await;
    client
        .batch_execute("CREATE TABLE drained (v int)")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO drained VALUES (1)")
        .await
        .unwrap();

    let signalled = Instant::now();
    fx.proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fx.proxy.is_running(),
        "pgwolf exited with a transaction open"
    );
    // New clients are no longer served.
    let refused = fx.try_connect().await;
    assert!(
        refused.is_err(),
        "pgwolf accepted a new client after SIGTERM"
    );

    // The open transaction can still finish.
    client
        .batch_execute("INSERT INTO drained VALUES (2)")
        .await
        .unwrap();
    within(10, "COMMIT after SIGTERM", client.batch_execute("COMMIT"))
        .await
        .unwrap();
    let status = fx.proxy.wait_exit(Duration::from_secs(12)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "pgwolf still running {:?} after SIGTERM",
            signalled.elapsed()
        )
    });
    assert!(status.success(), "pgwolf exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        signalled.elapsed()
    );

    let direct = fx.connect_direct().await;
    let row = direct
        .query_one("SELECT count(*) FROM drained", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        2,
        "the drained transaction was not committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_shutdown_timeout_when_a_transaction_never_ends() {
    let opts = FixtureOptions::new(PoolMode::Transaction, 2).setting("shutdown_timeout = \"2s\"");
    let mut fx = Fixture::with(opts).await;
    let client = fx.connect().await;
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let signalled = Instant::now();
    fx.proxy.signal("TERM");
    let status = fx.proxy.wait_exit(Duration::from_secs(6)).await;
    assert!(
        status.is_some(),
        "pgwolf did not exit within shutdown_timeout (2s) + slack"
    );
    let elapsed = signalled.elapsed();
    assert!(
        elapsed < Duration::from_secs(4),
        "exit took {elapsed:?} with shutdown_timeout = 2s"
    );
    assert!(
        elapsed >= Duration::from_millis(1500),
        "exit after {elapsed:?}: did not wait for the open transaction"
    );
    let err = within(
        10,
        "query after forced shutdown",
        simple_value(&client, "SELECT 1"),
    )
    .await;
    assert!(err.is_err(), "client kept working after pgwolf exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_database_without_dropping_clients() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let client = fx.connect().await;
    let session = within(10, "before reload", simple_value(&client, "SELECT 1")).await;
    session.unwrap();
    fx.pg.create_db("otherdb", APP_USER).await;
    let before = fx.try_connect_to("otherdb").await;
    assert!(before.is_err(), "otherdb served before it was configured");

    let pid = fx.proxy.pid();
    fx.proxy
        .rewrite_config(&fx.config_with(&fx.database_entry("otherdb", "otherdb")));
    fx.proxy.signal("HUP");
    let other = eventually(Duration::from_secs(10), || async {
        fx.try_connect_to("otherdb").await.ok()
    })
    .await;
    let other = other.expect("otherdb not served 10s after SIGHUP");
    let row = within(
        10,
        "query otherdb",
        simple_value(&other, "SELECT current_database()::text"),
    )
    .await
    .unwrap();
    assert_eq!(row.as_deref(), Some("otherdb"));

    assert_eq!(fx.proxy.pid(), pid);
    assert!(!client.is_closed(), "reload dropped a connected client");
    let row = within(
        10,
        "old client after reload",
        simple_value(&client, "SELECT current_database()::text"),
    )
    .await
    .unwrap();
    assert_eq!(row.as_deref(), Some("appdb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_serving() {
    let mut fx = Fixture::new(PoolMode::Transaction, 2).await;
    let client = fx.connect().await;
    simple_value(&client, "SELECT 1").await.unwrap();
    fx.proxy.rewrite_config("this is = not [valid toml\n");
    fx.proxy.signal("HUP");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        fx.proxy.is_running(),
        "pgwolf exited on a bad reload:\n{}",
        fx.proxy.log()
    );
    within(
        10,
        "old client after bad reload",
        simple_value(&client, "SELECT 1"),
    )
    .await
    .unwrap();
    let fresh = connect(fx.port(), APP_USER, APP_PASSWORD, "appdb").await;
    within(
        10,
        "new client after bad reload",
        simple_value(&fresh, "SELECT 1"),
    )
    .await
    .unwrap();
}

/// The auth file of a pooler pod is a mounted Secret: it changes under the
/// running pgwolf and nobody sends a signal. A new user gets in within
/// `auth_file_reload_interval`; a connected client keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_auth_file_lets_a_new_user_in_without_a_signal_or_a_dropped_client() {
    let fx = Fixture::with(
        FixtureOptions::new(PoolMode::Transaction, 2)
            .setting("auth_file_reload_interval = \"200ms\""),
    )
    .await;
    let client = fx.connect().await;
    simple_value(&client, "SELECT 1").await.unwrap();
    fx.pg.create_user("carol", "carol-secret").await;
    let refused = connect_as(&fx, "carol", "carol-secret").await;
    assert_eq!(
        refused.err().as_deref(),
        Some("28P01"),
        "carol before she is listed"
    );

    let pid = fx.proxy.pid();
    fx.proxy.rewrite_userlist(&pgwolf_tests::userlist(&[
        (APP_USER, APP_PASSWORD),
        ("carol", "carol-secret"),
    ]));
    let carol = eventually(Duration::from_secs(5), || async {
        connect_as(&fx, "carol", "carol-secret").await.ok()
    })
    .await
    .expect("carol not let in 5 s after the auth file listed her");
    let who = simple_value(&carol, "SELECT current_user::text")
        .await
        .unwrap();
    assert_eq!(who.as_deref(), Some("carol"));
    assert_eq!(fx.proxy.pid(), pid, "no restart");
    assert!(!client.is_closed(), "the reload dropped a connected client");
    simple_value(&client, "SELECT 1").await.unwrap();
    assert!(
        fx.proxy.log().contains("auth_file changed: reloading"),
        "{}",
        fx.proxy.log()
    );
}

/// A login through pgwolf; Err is the SQLSTATE (or the error text).
async fn connect_as(
    fx: &Fixture,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, String> {
    pgwolf_tests::try_connect(fx.port(), user, password, "appdb")
        .await
        .map_err(|e| sqlstate(&e).map_or_else(|| e.to_string(), str::to_string))
}
