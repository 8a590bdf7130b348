//! pgbench (libpq, simple and extended protocol) through pgwolf in each pool
//! mode. Tables are created with `pgbench -i` directly against PostgreSQL.

use pgwolf_tests::{Fixture, FixtureOptions, PoolMode, APP_DB, APP_USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_select_only_100_clients_pool_10() {
    let fx = Fixture::new(PoolMode::Transaction, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "100", "-j", "2", "-T", "5", "-S"]);
    run.assert_clean();
    let backends = fx.pg.backend_count(APP_USER, APP_DB).await;
    assert!(
        backends <= 10,
        "{backends} server connections for a pool of 10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_tpcb_100_clients_pool_10() {
    let fx = Fixture::new(PoolMode::Transaction, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "100", "-j", "2", "-T", "5"]);
    run.assert_clean();
    // Every counted transaction committed its history row (a client cut
    // off by the deadline may have committed one more, uncounted).
    let direct = fx.connect_direct().await;
    let row = direct
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap();
    let (history, processed) = (row.get::<_, i64>(0) as u64, run.stats.processed.unwrap());
    assert!(
        (processed..=processed + 100).contains(&history),
        "{history} history rows for {processed} transactions:\n{}",
        run.output()
    );
}

/// The default (worker_threads = 1) runs tokio's current-thread scheduler
/// on the main thread alone; 0 and N run the multi-thread runtime, the main
/// thread plus workers. Every shape carries pgbench's TPC-B script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_shapes_carry_tpcb() {
    for (setting, one_thread) in [
        ("", true),
        ("worker_threads = 0", false),
        ("worker_threads = 2", false),
    ] {
        let opts = FixtureOptions::new(PoolMode::Transaction, 10).setting(setting);
        let fx = Fixture::with(opts).await;
        fx.pgbench_init_direct(1);
        let run = fx.pgbench(&["-c", "20", "-j", "2", "-t", "50"]);
        assert_eq!(run.assert_clean(), 1000, "{setting:?}");
        let threads = std::fs::read_dir(format!("/proc/{}/task", fx.proxy.pid()))
            .unwrap()
            .count();
        if one_thread {
            assert_eq!(threads, 1, "the default config runs {threads} threads");
        } else {
            assert!(
                threads >= 3,
                "{setting}: {threads} threads, not main and 2 workers"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_extended_protocol() {
    let fx = Fixture::new(PoolMode::Transaction, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "50", "-j", "2", "-T", "3", "-S", "-M", "extended"]);
    run.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_prepared_protocol_100_clients_pool_10() {
    // -M prepared: named statements prepared once per client connection and
    // reused; in transaction mode they must work on any server connection.
    let fx = Fixture::new(PoolMode::Transaction, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "100", "-j", "2", "-T", "3", "-S", "-M", "prepared"]);
    run.assert_clean();
    // The TPC-B-like script: seven prepared statements, writes inside
    // BEGIN/END. pgbench 15 prepares each with a synchronous PQprepare
    // while its other clients hold transactions open: that prepare must
    // not wait for a server (it used to, until query_wait_timeout).
    let run = fx.pgbench(&["-c", "100", "-j", "2", "-t", "20", "-M", "prepared"]);
    assert_eq!(run.assert_clean(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_select_only_and_tpcb() {
    let fx = Fixture::new(PoolMode::Session, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "10", "-j", "2", "-T", "5", "-S"]);
    run.assert_clean();
    let run = fx.pgbench(&["-c", "10", "-j", "2", "-t", "50"]);
    assert_eq!(run.assert_clean(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_select_only_100_clients_pool_10() {
    let fx = Fixture::new(PoolMode::Statement, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "100", "-j", "2", "-T", "5", "-S"]);
    run.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_refuses_the_tpcb_transaction() {
    // The TPC-B script is BEGIN; 3 UPDATEs; SELECT; INSERT; END: statement
    // mode must refuse it with an error, not run it.
    let fx = Fixture::new(PoolMode::Statement, 10).await;
    fx.pgbench_init_direct(1);
    let run = fx.pgbench(&["-c", "4", "-j", "2", "-t", "10"]);
    let output = run.output();
    assert!(
        !run.success || run.stats.failed.unwrap_or(0) > 0,
        "statement mode ran multi-statement transactions:\n{output}"
    );
    assert!(
        output.contains("ERROR") || output.contains("error") || output.contains("abort"),
        "{output}"
    );
    let direct = fx.connect_direct().await;
    let row = direct
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        0,
        "TPC-B transactions were committed in statement mode"
    );
}
