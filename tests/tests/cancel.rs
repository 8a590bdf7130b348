//! Query cancellation through pgwolf: the client's CancelRequest (with the
//! proxy-issued key) reaches the right backend, quickly, and only that one.

use pgwolf_tests::clients::{simple_value, sqlstate};
use pgwolf_tests::time::eventually;
use pgwolf_tests::{within, Fixture, PgServer, PoolMode};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Wait until PostgreSQL runs `query` in `count` backends.
async fn wait_running(pg: &PgServer, query: &str, count: i64) {
    let admin = pg.superuser("postgres").await;
    let seen = eventually(Duration::from_secs(15), || async {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
                &[&query],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) >= count).then_some(())
    })
    .await;
    assert!(seen.is_some(), "`{query}` never ran on the server");
}

async fn cancel_long_query(mode: PoolMode) {
    let fx = Fixture::new(mode, 2).await;
    let client = fx.connect().await;
    let token = client.cancel_token();
    let sleeping = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(30)").await;
        (result, client)
    });
    wait_running(&fx.pg, "SELECT pg_sleep(30)", 1).await;

    let sent = Instant::now();
    within(5, "send CancelRequest", token.cancel_query(NoTls))
        .await
        .unwrap();
    let (result, client) = within(5, "cancelled query to return", sleeping)
        .await
        .unwrap();
    let elapsed = sent.elapsed();
    let err = result.expect_err("pg_sleep(30) was not cancelled");
    assert_eq!(sqlstate(&err), Some("57014"), "{err:?}");
    assert!(elapsed < Duration::from_secs(1), "cancel took {elapsed:?}");

    // The client's connection survives the cancel.
    let row = within(10, "query after cancel", simple_value(&client, "SELECT 1"))
        .await
        .unwrap();
    assert_eq!(row.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_transaction_mode() {
    cancel_long_query(PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_session_mode() {
    cancel_long_query(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_hits_only_its_own_client() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let a = fx.connect().await;
    let b = fx.connect().await;
    let token_a = a.cancel_token();
    let a_task =
        tokio::spawn(async move { a.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    let b_task =
        tokio::spawn(async move { b.simple_query("SELECT pg_sleep(2)").await.map(|_| ()) });
    wait_running(&fx.pg, "SELECT pg_sleep(30)", 1).await;
    wait_running(&fx.pg, "SELECT pg_sleep(2)", 1).await;
    token_a.cancel_query(NoTls).await.unwrap();
    let a_result = within(5, "cancelled client", a_task).await.unwrap();
    assert_eq!(sqlstate(&a_result.unwrap_err()), Some("57014"));
    let b_result = within(10, "other client", b_task).await.unwrap();
    assert!(
        b_result.is_ok(),
        "the other client's query was hit: {b_result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cancel_does_not_hit_the_next_user_of_the_server() {
    // Pool of one in transaction mode: A finishes, B takes the same server
    // connection; A's (late) cancel must not cancel B's query.
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let a = fx.connect().await;
    let b = fx.connect().await;
    simple_value(&a, "SELECT 1").await.unwrap();
    let token_a = a.cancel_token();
    let b_task =
        tokio::spawn(async move { b.simple_query("SELECT pg_sleep(1.5)").await.map(|_| ()) });
    wait_running(&fx.pg, "SELECT pg_sleep(1.5)", 1).await;
    token_a.cancel_query(NoTls).await.unwrap();
    let b_result = within(10, "B's query", b_task).await.unwrap();
    assert!(
        b_result.is_ok(),
        "A's cancel reached B's query: {b_result:?}"
    );
    within(10, "A still works", simple_value(&a, "SELECT 1"))
        .await
        .unwrap();
}
