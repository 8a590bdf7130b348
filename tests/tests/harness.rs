//! The harness itself, against PostgreSQL only (no pgwolf): if these fail,
//! every other end-to-end test is meaningless.

use pgwolf_tests::clients::{psql_ok, sqlstate};
use pgwolf_tests::{
    connect, pgbench, psql, try_connect, within, PgServer, SUPERUSER, SUPERUSER_PASSWORD,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_starts_and_superuser_connects() {
    let pg = PgServer::start();
    let client = pg.superuser("postgres").await;
    let row = within(
        10,
        "SHOW server_version_num",
        client.query_one("SHOW server_version_num", &[]),
    )
    .await
    .unwrap();
    let version: String = row.get(0);
    assert!(
        version.starts_with("15"),
        "expected PostgreSQL 15, got {version}"
    );
    let row = client
        .query_one("SHOW listen_addresses", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "127.0.0.1");
    let row = client.query_one("SHOW fsync", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_and_db_then_connect_directly() {
    let pg = PgServer::start();
    pg.create_user("alice", "wonder'land").await;
    pg.create_db("alicedb", "alice").await;
    let client = connect(pg.port(), "alice", "wonder'land", "alicedb").await;
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice");
    assert_eq!(row.get::<_, String>(1), "alicedb");
    assert!(pg
        .password_verifier("alice")
        .await
        .starts_with("SCRAM-SHA-256$4096:"));

    let err = try_connect(pg.port(), "alice", "wrong", "alicedb")
        .await
        .expect_err("wrong password must fail");
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
    let err = try_connect(pg.port(), "alice", "wonder'land", "nosuchdb")
        .await
        .expect_err("unknown db must fail");
    assert_eq!(sqlstate(&err), Some("3D000"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_pgbench_directly() {
    let pg = PgServer::start();
    pg.create_user("bench", "bench-pw").await;
    pg.create_db("benchdb", "bench").await;
    let out = psql(pg.port(), "bench", "bench-pw", "benchdb", "SELECT 40 + 2");
    assert_eq!(psql_ok(&out), "42");
    let out = psql(pg.port(), "bench", "bad", "benchdb", "SELECT 1");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));

    let init = pgbench(
        pg.port(),
        "bench",
        "bench-pw",
        "benchdb",
        &["-i", "-q", "-s", "1"],
    );
    assert!(init.success, "{}", init.output());
    let run = pgbench(
        pg.port(),
        "bench",
        "bench-pw",
        "benchdb",
        &["-c", "4", "-j", "2", "-t", "25", "-S"],
    );
    assert_eq!(run.assert_clean(), 100);
    assert!(run.stats.tps.unwrap() > 0.0, "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_restart_keeps_port_and_data() {
    let mut pg = PgServer::start();
    let port = pg.port();
    pg.execute(
        "postgres",
        "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)",
    )
    .await;
    pg.stop();
    assert!(!pg.is_running());
    let err = try_connect(port, SUPERUSER, SUPERUSER_PASSWORD, "postgres")
        .await
        .expect_err("stopped server refuses");
    assert!(
        err.code().is_none(),
        "expected a connection error, got {err:?}"
    );
    pg.restart();
    assert_eq!(pg.port(), port);
    let client = pg.superuser("postgres").await;
    let row = client.query_one("SELECT v FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_run_side_by_side_with_options() {
    let a = PgServer::start();
    let b = PgServer::start_with(pgwolf_tests::PgOptions {
        max_connections: 20,
        conf: vec!["work_mem = '8MB'".to_string()],
        ..Default::default()
    });
    assert_ne!(a.port(), b.port());
    let client = b.superuser("postgres").await;
    let row = client.query_one("SHOW max_connections", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "20");
    let row = client.query_one("SHOW work_mem", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "8MB");
    let client = a.superuser("postgres").await;
    let row = client.query_one("SHOW max_connections", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_on_drop() {
    let pg = PgServer::start();
    let (pid, dir) = (pg.pid().unwrap(), pg.data_dir());
    drop(pg);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} still running"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
}
