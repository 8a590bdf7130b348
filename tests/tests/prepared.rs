//! Managed prepared statements in transaction mode, end to end: the Python
//! drivers (tests/python/drivers.py), a server connection killed between
//! uses, and SQL `DEALLOCATE` of a protocol-level statement.

use pgwolf_tests::tools::{run_bounded, workspace_dir};
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
use std::process::Command;
use std::time::Duration;

fn python(driver: &str, port: u16, clients: usize, rounds: usize) -> std::process::Output {
    let dsn = format!("postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{APP_DB}");
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_dir().join("tests/python/drivers.py"))
        .args([driver, &dsn, &clients.to_string(), &rounds.to_string()]);
    run_bounded(&mut cmd, Duration::from_secs(180))
}

/// Runs drivers.py; returns (backends, checks) per client.
fn run_python(driver: &str, port: u16, clients: usize, rounds: usize) -> Vec<(usize, usize)> {
    let out = python(driver, port, clients, rounds);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "drivers.py {driver} failed ({}):\n{stdout}\n{stderr}\n(needs python3 with {driver}: scripts/install-deps installs it)",
        out.status
    );
    assert_eq!(stdout.lines().last(), Some("done"), "{stdout}");
    let field = |line: &str, key: &str| -> usize {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    stdout
        .lines()
        .filter(|l| l.starts_with("client="))
        .map(|l| (field(l, "backends"), field(l, "checks")))
        .collect()
}

/// More clients than server connections, each long enough to run on both
/// of them: every result was checked by the script.
async fn driver_over_a_small_pool(driver: &str, checks_per_round: usize) {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let (clients, rounds) = (6, 40);
    let port = fx.port();
    let driver_name = driver.to_string();
    let results =
        tokio::task::spawn_blocking(move || run_python(&driver_name, port, clients, rounds))
            .await
            .unwrap();
    assert_eq!(results.len(), clients, "{driver}: one line per client");
    for (n, (backends, checks)) in results.into_iter().enumerate() {
        assert_eq!(checks, rounds * checks_per_round, "{driver} client {n}");
        assert!(
            backends >= 2,
            "{driver} client {n} ran on {backends} server connection(s); the test means to move it between them"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_named_statements_over_a_small_pool() {
    driver_over_a_small_pool("asyncpg", 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_prepared_statements_over_a_small_pool() {
    driver_over_a_small_pool("psycopg", 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_fails_without_management() {
    // The control: with max_prepared_statements = 0 the statements pass
    // through untouched and asyncpg meets a server that lacks them, so the
    // test above does exercise what pgwolf manages.
    let opts = FixtureOptions::new(PoolMode::Transaction, 2).setting("max_prepared_statements = 0");
    let fx = Fixture::with(opts).await;
    let port = fx.port();
    let out = tokio::task::spawn_blocking(move || python("asyncpg", port, 6, 40))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "asyncpg passed unmanaged:\n{stderr}");
    assert!(
        stderr.contains("does not exist"),
        "expected a missing prepared statement:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_is_prepared_again_after_its_server_connection_is_killed() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;
    let stmt = client.prepare("SELECT $1::int4 + 1").await.unwrap();
    let first_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        client
            .query_one(&stmt, &[&1i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );

    let direct = fx.connect_direct().await;
    let killed: bool = direct
        .query_one("SELECT pg_terminate_backend($1)", &[&first_pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    // The backend is gone once pg_stat_activity no longer lists it.
    within(10, "backend to exit", async {
        loop {
            let n: i64 = direct
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&first_pid],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let row = within(30, "the statement on a new connection", async {
        client.query_one(&stmt, &[&41i32]).await
    })
    .await
    .expect("the next use re-prepares the statement on the new server connection");
    assert_eq!(row.get::<_, i32>(0), 42);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, first_pid, "a new server connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_deallocate_of_a_protocol_statement_is_answered() {
    // Through libpq (psycopg's pq layer): PQprepare with the test's own
    // names, SQL DEALLOCATE between transactions, inside one and inside a
    // failed one, each checked against what PostgreSQL itself answers.
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let port = fx.port();
    let results = tokio::task::spawn_blocking(move || run_python("deallocate", port, 1, 1))
        .await
        .unwrap();
    assert_eq!(results, vec![(1, 15)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_deallocate_directly_against_postgres() {
    // The same script straight to PostgreSQL: proves the expectations.
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let port = fx.pg.port();
    let results = tokio::task::spawn_blocking(move || run_python("deallocate", port, 1, 1))
        .await
        .unwrap();
    assert_eq!(results, vec![(1, 15)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_outlives_cache_pressure_within_its_transaction() {
    // max_prepared_statements = 1, a cursor over one statement read in
    // steps while the transaction prepares and runs others. The protocol
    // docs say closing a statement closes its portals (PostgreSQL 15 was
    // seen to keep them, with the eviction forced); pgwolf relies on
    // neither and evicts nothing the current transaction used.
    let opts = FixtureOptions::new(PoolMode::Transaction, 1).setting("max_prepared_statements = 1");
    let fx = Fixture::with(opts).await;
    let mut client = fx.connect().await;
    let series = client
        .prepare("SELECT g FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let portal = tx.bind(&series, &[]).await.unwrap();
    let mut seen = Vec::new();
    for step in 0..5i32 {
        let other = tx
            .prepare(&format!("SELECT {step}::int4 + $1::int4"))
            .await
            .unwrap();
        let row = tx.query_one(&other, &[&1i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), step + 1);
        for row in tx.query_portal(&portal, 2).await.unwrap() {
            seen.push(row.get::<_, i32>(0));
        }
    }
    tx.commit().await.unwrap();
    assert_eq!(seen, (1..=10).collect::<Vec<i32>>());
    // The next transaction is back within the bound, and still correct.
    let row = client.query_one(&series, &[]).await;
    assert!(row.is_err(), "query_one over 10 rows is an error by design");
    assert_eq!(client.query(&series, &[]).await.unwrap().len(), 10);
}
