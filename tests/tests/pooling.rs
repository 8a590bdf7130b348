//! Pool behaviour seen from clients and from PostgreSQL: sharing in
//! transaction mode, pinning and reset in session mode, queueing, statement
//! mode's refusal of transactions, prepared statements across servers.
//!
//! Queries use the simple protocol (`simple_value`) unless the test is about
//! the extended one: tokio-postgres's `query` prepares a named statement in
//! one round trip and binds it in the next, which in transaction mode needs
//! pgwolf's prepared-statement support (tested on its own below).

use futures_util::future::join_all;
use pgwolf_tests::clients::{simple_value, sqlstate};
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_USER};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    within(
        30,
        "SELECT pg_backend_pid()",
        simple_value(client, "SELECT pg_backend_pid()"),
    )
    .await
    .unwrap()
    .expect("a pid")
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_shares_few_server_connections() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(fx.connect().await);
    }
    // Every client runs queries concurrently; all of them are served by at
    // most two backends.
    let pids: Vec<Vec<String>> = join_all(clients.iter().map(|c| async move {
        let mut pids = Vec::new();
        for _ in 0..5 {
            let pid = simple_value(c, "SELECT pg_backend_pid() FROM pg_sleep(0.01)")
                .await
                .unwrap()
                .expect("a pid");
            pids.push(pid);
        }
        pids
    }))
    .await;
    let distinct: HashSet<String> = pids.into_iter().flatten().collect();
    assert!(
        !distinct.is_empty() && distinct.len() <= 2,
        "backends used: {distinct:?}"
    );
    let backends = fx.pg.backend_count(APP_USER, APP_DB).await;
    assert!(
        (1..=2).contains(&backends),
        "{backends} server connections for a pool of 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_bounds_concurrency_under_load() {
    let fx = Fixture::new(PoolMode::Transaction, 3).await;
    let mut clients = Vec::new();
    for _ in 0..30 {
        clients.push(fx.connect().await);
    }
    let started = Instant::now();
    let work = join_all(clients.iter().map(|c| async move {
        simple_value(c, "SELECT pg_sleep(0.1)").await.unwrap();
    }));
    let sample = async {
        let mut max = 0;
        for _ in 0..10 {
            max = max.max(fx.pg.backend_count(APP_USER, APP_DB).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        max
    };
    let (_, max) = within(60, "30 queries over 3 servers", async {
        tokio::join!(work, sample)
    })
    .await;
    // 30 × 100 ms over 3 servers takes at least a second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(max <= 3, "saw {max} server connections for a pool of 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_pins_a_backend_per_client() {
    let fx = Fixture::new(PoolMode::Session, 3).await;
    let a = fx.connect().await;
    let b = fx.connect().await;
    let pid_a = backend_pid(&a).await;
    let pid_b = backend_pid(&b).await;
    assert_ne!(pid_a, pid_b);
    a.batch_execute("SET work_mem = '77MB'").await.unwrap();
    for _ in 0..5 {
        assert_eq!(backend_pid(&a).await, pid_a);
        assert_eq!(backend_pid(&b).await, pid_b);
    }
    let row = a.query_one("SHOW work_mem", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "77MB");
    let row = b.query_one("SHOW work_mem", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "4MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_resets_server_state_between_clients() {
    let fx = Fixture::new(PoolMode::Session, 1).await;
    let a = fx.connect().await;
    let pid = backend_pid(&a).await;
    a.batch_execute(
        "SET work_mem = '77MB'; CREATE TEMP TABLE scratch (v int); PREPARE p AS SELECT 1",
    )
    .await
    .unwrap();
    drop(a);
    // The next client gets the same server connection, reset (DISCARD ALL).
    let b = fx.connect().await;
    let same = within(
        30,
        "second client's query",
        b.query_one("SELECT pg_backend_pid()", &[]),
    )
    .await
    .unwrap();
    assert_eq!(
        same.get::<_, i32>(0),
        pid,
        "pool of 1 should reuse its server connection"
    );
    let row = b.query_one("SHOW work_mem", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "4MB");
    let err = b.simple_query("SELECT * FROM scratch").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("42P01"), "temp table leaked: {err:?}");
    let err = b.simple_query("EXECUTE p").await.unwrap_err();
    assert_eq!(
        sqlstate(&err),
        Some("26000"),
        "prepared statement leaked: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_client_waits_for_a_free_server() {
    let fx = Fixture::new(PoolMode::Session, 1).await;
    let a = fx.connect().await;
    backend_pid(&a).await;
    let port = fx.port();
    let waiter = tokio::spawn(async move {
        let b = pgwolf_tests::connect(port, "app", "app-secret", "appdb").await;
        let row = b.query_one("SELECT 5", &[]).await.unwrap();
        (Instant::now(), row.get::<_, i32>(0))
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiter.is_finished(),
        "second client was served while the only server was taken"
    );
    let released = Instant::now();
    drop(a);
    let (done, five) = within(15, "second client after the first left", waiter)
        .await
        .unwrap();
    assert_eq!(five, 5);
    assert!(done >= released);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_queues_until_commit() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let a = fx.connect().await;
    let b = fx.connect().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiting = tokio::spawn(async move {
        let row = b.query_one("SELECT 6", &[]).await.unwrap();
        (Instant::now(), row.get::<_, i32>(0))
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "second client ran while the only server was inside a transaction"
    );
    let committed = Instant::now();
    a.batch_execute("COMMIT").await.unwrap();
    let (done, six) = within(15, "queued query", waiting).await.unwrap();
    assert_eq!(six, 6);
    assert!(done >= committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_gives_an_error_not_a_hang() {
    let opts = FixtureOptions::new(PoolMode::Transaction, 1).setting("query_wait_timeout = \"1s\"");
    let fx = Fixture::with(opts).await;
    let a = fx.connect().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let started = Instant::now();
    // The waiting client may be refused at login or at its query.
    let result = within(15, "query waiting for a server", async {
        let b = fx.try_connect().await?;
        b.query_one("SELECT 1", &[]).await
    })
    .await;
    let err = result.expect_err("a client waiting past query_wait_timeout must get an error");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "error came after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "error came early, after {:?}: {err:?}",
        started.elapsed()
    );
    assert!(
        err.code().is_some(),
        "expected an ErrorResponse with a SQLSTATE, got {err:?}"
    );
    a.batch_execute("COMMIT").await.unwrap();
    within(
        10,
        "client holding the server still works",
        a.query_one("SELECT 1", &[]),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_runs_statements_and_refuses_transactions() {
    let fx = Fixture::new(PoolMode::Statement, 2).await;
    let client = fx.connect().await;
    // Unnamed statement, one round trip.
    let rows = within(
        10,
        "autocommit statement",
        client.query_typed("SELECT $1::int4 + 1", &[(&1i32, Type::INT4)]),
    )
    .await
    .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 2);

    // A multi-statement transaction must fail somewhere, never silently succeed.
    let outcome = within(10, "transaction in statement mode", async {
        client.batch_execute("BEGIN").await?;
        client.batch_execute("SELECT 1").await?;
        client.batch_execute("COMMIT").await
    })
    .await;
    let err = outcome.expect_err("statement mode accepted a multi-statement transaction");
    assert!(err.code().is_some() || client.is_closed(), "{err:?}");

    // A new client is still served.
    let again = fx.connect().await;
    let row = within(
        10,
        "statement after refusal",
        again.query_one("SELECT 3", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_across_pooled_servers() {
    // tokio-postgres prepares named statements (s0, s1, ...) in one round
    // trip and binds them in later ones; in transaction mode those can land on
    // different server connections, which pgwolf must handle.
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(fx.connect().await);
    }
    let sums = within(
        120,
        "prepared statements from 8 clients",
        join_all(clients.iter().enumerate().map(|(n, c)| async move {
            let stmt = c
                .prepare("SELECT $1::int8 * 2 FROM pg_sleep(0.002)")
                .await
                .unwrap();
            let mut sum = 0i64;
            for i in 0..30i64 {
                let row = c.query_one(&stmt, &[&(i + n as i64)]).await.unwrap();
                sum += row.get::<_, i64>(0);
            }
            sum
        })),
    )
    .await;
    for (n, sum) in sums.into_iter().enumerate() {
        let expected: i64 = (0..30i64).map(|i| (i + n as i64) * 2).sum();
        assert_eq!(sum, expected, "client {n}");
    }
}
