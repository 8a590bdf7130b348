//! Settings a client sends at startup (`options=-c ...`, `PGOPTIONS`,
//! pgjdbc's `currentSchema`, asyncpg's `server_settings`, any run-time
//! parameter in the startup packet) are applied to every server
//! connection the client is lent and reset for the next client, in session
//! and transaction mode, with a pool smaller than the number of clients;
//! each client sees what it would see connected directly. A setting
//! PostgreSQL refuses gets PostgreSQL's SQLSTATE.

use pgwolf_tests::clients::sqlstate;
use pgwolf_tests::tools::{pg_bin, run_bounded, workspace_dir};
use pgwolf_tests::{Fixture, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
use std::process::Command;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

async fn connect_with(port: u16, options: &str) -> Result<Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(APP_USER)
        .password(APP_PASSWORD)
        .dbname(APP_DB)
        .connect_timeout(Duration::from_secs(10));
    if !options.is_empty() {
        cfg.options(options);
    }
    let (client, connection) = cfg.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn value(c: &Client, sql: &str) -> String {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Schemas `a` and `b`, each with a table `t` holding one row naming its
/// schema.
async fn schemas(fx: &Fixture) {
    let c = fx.connect_direct().await;
    for s in ["a", "b"] {
        c.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.t (v text); \
             DELETE FROM {s}.t; INSERT INTO {s}.t VALUES ('{s}')"
        ))
        .await
        .unwrap();
    }
}

const A: &str = "-c statement_timeout=1234 -c search_path=a";
const B: &str = "-c search_path=b";

/// What a client with `options` sees of its settings, through `port`.
async fn seen(c: &Client) -> (String, String, String) {
    (
        value(c, "SHOW statement_timeout").await,
        value(c, "SHOW search_path").await,
        value(c, "SELECT v FROM t").await,
    )
}

async fn two_clients_one_server(mode: PoolMode) {
    let fx = Fixture::new(mode, 1).await;
    schemas(&fx).await;
    let direct_a = seen(&connect_with(fx.pg.port(), A).await.unwrap()).await;
    let direct_b = seen(&connect_with(fx.pg.port(), B).await.unwrap()).await;
    assert_eq!(direct_a, ("1234ms".into(), "a".into(), "a".into()));
    assert_eq!(direct_b, ("0".into(), "b".into(), "b".into()));
    let plain = fx.connect_direct().await;
    let default_path = value(&plain, "SHOW search_path").await;

    match mode {
        // One server connection: the clients take turns on it.
        PoolMode::Transaction => {
            let a = connect_with(fx.port(), A).await.unwrap();
            let b = connect_with(fx.port(), B).await.unwrap();
            for _ in 0..3 {
                assert_eq!(seen(&a).await, direct_a);
                assert_eq!(seen(&b).await, direct_b);
            }
            let pids: std::collections::BTreeSet<i32> = [
                a.query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0),
                b.query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0),
            ]
            .into();
            assert_eq!(pids.len(), 1, "both ran on the one server connection");
        }
        // A session holds its server: one after the other.
        _ => {
            for _ in 0..2 {
                let a = connect_with(fx.port(), A).await.unwrap();
                assert_eq!(seen(&a).await, direct_a);
                drop(a);
                let b = connect_with(fx.port(), B).await.unwrap();
                assert_eq!(seen(&b).await, direct_b);
                drop(b);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // A client that sent nothing gets the server's defaults back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = connect_with(fx.port(), "").await.unwrap();
    assert_eq!(value(&c, "SHOW statement_timeout").await, "0");
    assert_eq!(value(&c, "SHOW search_path").await, default_path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_follow_each_client_over_one_server_in_transaction_mode() {
    two_clients_one_server(PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_follow_each_client_over_one_server_in_session_mode() {
    two_clients_one_server(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgoptions_reach_psql_through_pgwolf() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let out = run_bounded(
        Command::new(pg_bin("psql"))
            .args(["-X", "-At", "-h", "127.0.0.1", "-p", &fx.port().to_string()])
            .args(["-U", APP_USER, "-d", APP_DB, "-c", "SHOW statement_timeout"])
            .env("PGPASSWORD", APP_PASSWORD)
            .env("PGOPTIONS", "-c statement_timeout=5s"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5s");
}

fn jdbc(port: u16, how: &str) -> String {
    let url = format!("jdbc:postgresql://127.0.0.1:{port}/{APP_DB}");
    let out = run_bounded(
        Command::new("java")
            .arg("-cp")
            .arg("/usr/share/java/postgresql.jar")
            .arg(workspace_dir().join("tests/java/JdbcSchemas.java"))
            .args([&url, APP_USER, APP_PASSWORD, how]),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "JdbcSchemas {how}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_current_schema_per_client_in_both_modes() {
    for (mode, how) in [
        (PoolMode::Transaction, "interleave"),
        (PoolMode::Session, "one-by-one"),
    ] {
        let fx = Fixture::new(mode, 1).await;
        schemas(&fx).await;
        let stdout = jdbc(fx.port(), how);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.last(), Some(&"done"), "{stdout}");
        for line in &lines[..lines.len() - 1] {
            let (schema, v) = line.split_once('=').unwrap();
            assert_eq!(schema, v, "{how}: a client saw another's schema: {stdout}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_server_settings_per_client() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    schemas(&fx).await;
    let dsn = format!(
        "postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/{APP_DB}",
        fx.port()
    );
    for driver in ["asyncpg", "psycopg"] {
        let out = run_bounded(
            Command::new("python3")
                .arg(workspace_dir().join("tests/python/startup_settings.py"))
                .args([driver, &dsn]),
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{driver}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().last(), Some("done"), "{stdout}");
    }
}

/// The SQLSTATE a client gets, at connect or at its first query.
async fn refused(port: u16, options: &str) -> String {
    let err = match connect_with(port, options).await {
        Err(e) => e,
        Ok(c) => c.simple_query("SELECT 1").await.expect_err(options),
    };
    sqlstate(&err)
        .unwrap_or_else(|| panic!("{options}: no SQLSTATE: {err}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_postgresql_refuses_gets_its_sqlstate() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    for options in ["-c no_such_setting=1", "-c statement_timeout=soon", "-Z 1"] {
        let direct = refused(fx.pg.port(), options).await;
        let pooled = refused(fx.port(), options).await;
        assert_eq!(pooled, direct, "{options}");
    }
    // Who the session is cannot change under a pool (PostgreSQL itself
    // would allow a role the user is a member of).
    assert_eq!(refused(fx.port(), "-c role=postgres").await, "0A000");
    // The pool still serves a client with good settings.
    let ok = connect_with(fx.port(), A).await.unwrap();
    assert_eq!(value(&ok, "SHOW statement_timeout").await, "1234ms");
}
