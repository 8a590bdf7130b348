//! A server that hangs while its kernel still acknowledges every packet (a
//! stopped process, a stuck disk): keepalives and `tcp_user_timeout` see
//! nothing wrong, so `query_timeout` and `transaction_timeout` are what
//! bound the client's wait. The backend is stopped with SIGSTOP, as a hung
//! one looks, and let go at the end of each test, failed or not.

use pgwolf_tests::clients::{simple_value, sqlstate};
use pgwolf_tests::stopped::Stopped;
use pgwolf_tests::time::eventually;
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode};
use std::time::{Duration, Instant};

async fn fixture(setting: &str) -> Fixture {
    Fixture::with(FixtureOptions::new(PoolMode::Transaction, 2).setting(setting)).await
}

/// query_timeout: a statement on a hung server is answered with 57014
/// after the timeout, not never; a statement that answers in time is not
/// touched; pgwolf goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_ends_a_request_a_hung_server_never_answers() {
    let fx = fixture("query_timeout = \"1s\"").await;
    let c = fx.connect().await;
    c.simple_query("SELECT pg_sleep(0.3)")
        .await
        .expect("an answer within query_timeout");
    c.batch_execute("BEGIN").await.unwrap();
    let pid = simple_value(&c, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .unwrap();
    let hung = Stopped::new(pid.parse().unwrap());
    let started = Instant::now();
    let e = within(
        10,
        "the statement on the hung server",
        c.simple_query("SELECT 1"),
    )
    .await
    .expect_err("a hung server cannot answer");
    let waited = started.elapsed();
    assert_eq!(sqlstate(&e), Some("57014"), "{e:?}");
    let message = e.as_db_error().unwrap().message().to_string();
    assert!(message.contains("query_timeout"), "{message}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    eprintln!("hung server: answered after {waited:?} (query_timeout 1s)");
    drop(hung);
    let after = fx.connect().await;
    assert_eq!(
        simple_value(&after, "SELECT 2").await.unwrap().as_deref(),
        Some("2")
    );
}

/// transaction_timeout: a transaction waiting on a hung server, and one
/// waiting on its client, are both ended after the timeout with 25P04;
/// nothing of them is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_timeout_ends_transactions_waiting_on_either_side() {
    let fx = fixture("transaction_timeout = \"1s\"").await;
    let setup = fx.connect().await;
    setup.simple_query("CREATE TABLE t (x int)").await.unwrap();

    // Waiting on the client: ended, rolled back.
    let idle = fx.connect().await;
    idle.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let closed = eventually(Duration::from_secs(5), || async {
        idle.is_closed().then_some(())
    })
    .await;
    assert!(closed.is_some(), "the idle transaction was not ended");

    // Waiting on a hung server: ended at the timeout, from BEGIN.
    let busy = fx.connect().await;
    let started = Instant::now();
    busy.batch_execute("BEGIN; INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let pid = simple_value(&busy, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .unwrap();
    let hung = Stopped::new(pid.parse().unwrap());
    let e = within(10, "the hung transaction", busy.simple_query("SELECT 1"))
        .await
        .expect_err("ended by transaction_timeout");
    let waited = started.elapsed();
    assert_eq!(sqlstate(&e), Some("25P04"), "{e:?}");
    assert!(waited < Duration::from_secs(3), "ended after {waited:?}");
    drop(hung);

    // A short transaction is untouched.
    let quick = fx.connect().await;
    quick
        .batch_execute("BEGIN; SELECT pg_sleep(0.2); COMMIT")
        .await
        .expect("within transaction_timeout");
    assert_eq!(
        simple_value(&quick, "SELECT count(*) FROM t")
            .await
            .unwrap()
            .as_deref(),
        Some("0"),
        "nothing of the ended transactions was committed"
    );
}

/// server_check_query: an idle pooled connection whose backend hung since
/// it was released is checked before it is lent (`server_check_delay`
/// 0 s here, so at every check-out); the check times out, the connection
/// is closed and the client's statement runs on a new one, answered a
/// little after `server_check_timeout` instead of never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_check_query_keeps_clients_off_an_idle_hung_connection() {
    let fx = Fixture::with(
        FixtureOptions::new(PoolMode::Transaction, 2)
            .setting("server_check_delay = \"0s\"")
            .setting("server_check_timeout = \"500ms\""),
    )
    .await;
    let c = fx.connect().await;
    let first = simple_value(&c, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .unwrap();
    // A checked connection still serves: the same backend again.
    let again = simple_value(&c, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first, "a healthy idle connection passes its check");

    let hung = Stopped::new(first.parse().unwrap());
    let started = Instant::now();
    let other = within(
        10,
        "a statement while the idle connection's backend hangs",
        simple_value(&c, "SELECT pg_backend_pid()"),
    )
    .await
    .expect("served by a new connection")
    .unwrap();
    let waited = started.elapsed();
    assert_ne!(other, first, "lent the hung connection");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    eprintln!(
        "idle connection to a hung backend: replaced after {waited:?} (server_check_timeout 500ms)"
    );
    let log = fx.proxy.log();
    assert!(
        log.contains("failed server_check_query") && log.contains("server_check_timeout"),
        "{log}"
    );
    drop(hung);
}
