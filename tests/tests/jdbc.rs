//! JDBC (pgjdbc) through pgwolf: tests/java/JdbcSmoke.java run as a single
//! source file with the distribution's postgresql.jar.

use pgwolf_tests::tools::{run_bounded, workspace_dir};
use pgwolf_tests::{Fixture, PgServer, PoolMode, APP_PASSWORD, APP_USER};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn jdbc_jar() -> PathBuf {
    let jar = std::env::var_os("PGJDBC_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/postgresql.jar"));
    assert!(
        jar.exists(),
        "{} missing: install libpostgresql-jdbc-java or set PGJDBC_JAR",
        jar.display()
    );
    jar
}

/// Run JdbcSmoke against `url`; returns its `key=value` lines.
fn run_smoke(url: &str, timezone: &str) -> HashMap<String, String> {
    let source = workspace_dir().join("tests/java/JdbcSmoke.java");
    let mut cmd = Command::new("java");
    cmd.arg(format!("-Duser.timezone={timezone}"))
        .arg("-cp")
        .arg(jdbc_jar())
        .arg(&source)
        .args([url, APP_USER, APP_PASSWORD]);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "JdbcSmoke failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "done"), "{stdout}");
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_smoke(out: &HashMap<String, String>, timezone: &str) {
    let expect = [
        ("server_major", "15"),
        ("statement", "42"),
        ("user", "app"),
        ("timezone", timezone),
        ("prepared_sum", "110"),
        ("prepared_last", "hi10!"),
        ("batch_count", "100"),
        ("batch_sum", "4950"),
        ("error_state", "22012"),
        ("after_error", "still here"),
    ];
    for (key, value) in expect {
        assert_eq!(
            out.get(key).map(String::as_str),
            Some(value),
            "{key} in {out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_session_mode() {
    let fx = Fixture::new(PoolMode::Session, 4).await;
    let url = format!("jdbc:postgresql://127.0.0.1:{}/appdb", fx.port());
    let out = run_smoke(&url, "Asia/Tokyo");
    assert_smoke(&out, "Asia/Tokyo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_transaction_mode_unnamed_statements() {
    // prepareThreshold=0: pgjdbc never names statements, the usual setting
    // behind a transaction-mode pooler.
    let fx = Fixture::new(PoolMode::Transaction, 4).await;
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/appdb?prepareThreshold=0",
        fx.port()
    );
    let out = run_smoke(&url, "America/New_York");
    assert_smoke(&out, "America/New_York");
}

/// Three JVMs at once over a pool of two server connections, so each
/// client's transactions land on either connection in turn, with pgjdbc
/// naming its statements (`S_1`, ...) after `prepare_threshold` uses.
async fn jdbc_named_statements_over_a_small_pool(prepare_threshold: u32) {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/appdb?prepareThreshold={prepare_threshold}",
        fx.port()
    );
    let outs = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let runs: Vec<_> = ["UTC", "Asia/Kolkata", "America/Sao_Paulo"]
                .into_iter()
                .map(|tz| {
                    let url = &url;
                    s.spawn(move || (tz, run_smoke(url, tz)))
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("JdbcSmoke thread"))
                .collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();
    for (tz, out) in &outs {
        assert_smoke(out, tz);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_transaction_mode_named_statements_default_threshold() {
    jdbc_named_statements_over_a_small_pool(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_transaction_mode_named_statements_threshold_1() {
    jdbc_named_statements_over_a_small_pool(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_directly_against_postgres() {
    // The same program straight to PostgreSQL: proves the expectations.
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db("appdb", APP_USER).await;
    let url = format!("jdbc:postgresql://127.0.0.1:{}/appdb", pg.port());
    let out = run_smoke(&url, "Europe/Berlin");
    assert_smoke(&out, "Europe/Berlin");
}
