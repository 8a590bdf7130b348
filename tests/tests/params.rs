//! Startup parameters are per client even when clients share one server
//! connection: pgwolf must apply each client's settings on the server it
//! lends them (transaction mode, pool of one).

use futures_util::future::join_all;
use pgwolf_tests::clients::{config, psql_command, try_connect_with};
use pgwolf_tests::tools::run_bounded;
use pgwolf_tests::{within, Fixture, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
use std::collections::HashSet;
use std::time::Duration;

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timezone_and_datestyle_per_client_over_one_server() {
    // libpq sends PGTZ and PGDATESTYLE as the `timezone` and `datestyle`
    // startup parameters (checked on the wire), so psql is a real client
    // that sets TimeZone at startup.
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let clients = [
        ("Asia/Tokyo", "ISO, DMY"),
        ("America/New_York", "SQL, MDY"),
        ("Europe/Berlin", "ISO, MDY"),
        ("Australia/Sydney", "German, DMY"),
        ("America/Sao_Paulo", "Postgres, YMD"),
    ];
    let mut script = Vec::new();
    for _ in 0..ROUNDS {
        script.push("SHOW TimeZone");
        script.push("SHOW DateStyle");
        script.push("SELECT pg_backend_pid() FROM pg_sleep(0.01)");
    }
    let port = fx.port();
    let outputs: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = clients
            .iter()
            .map(|(tz, datestyle)| {
                let script = &script;
                s.spawn(move || {
                    let mut cmd = psql_command(port, APP_USER, APP_PASSWORD, APP_DB);
                    cmd.env("PGTZ", tz).env("PGDATESTYLE", datestyle);
                    for sql in script {
                        cmd.arg("-c").arg(sql);
                    }
                    let out = run_bounded(&mut cmd, Duration::from_secs(120));
                    assert!(
                        out.status.success(),
                        "psql ({tz}) failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });

    let mut pids = HashSet::new();
    for ((tz, datestyle), out) in clients.iter().zip(&outputs) {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3 * ROUNDS, "psql output for {tz}:\n{out}");
        for round in lines.chunks(3) {
            assert_eq!(
                round[0], *tz,
                "client with PGTZ={tz} saw another TimeZone:\n{out}"
            );
            assert_eq!(
                round[1], *datestyle,
                "client with PGDATESTYLE={datestyle}:\n{out}"
            );
            pids.insert(round[2].to_string());
        }
    }
    assert_eq!(
        pids.len(),
        1,
        "a pool of one should use one backend, saw {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_name_per_client_over_one_server() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut cfg = config(fx.port(), APP_USER, APP_PASSWORD, APP_DB);
        cfg.application_name(format!("app-{i}"));
        clients.push(try_connect_with(&cfg).await.unwrap());
    }
    let seen = within(
        60,
        "interleaved SHOW application_name",
        join_all(clients.iter().map(|c| async move {
            let mut names = Vec::new();
            for _ in 0..ROUNDS {
                let row = c
                    .query_one(
                        "SELECT current_setting('application_name') FROM pg_sleep(0.005)",
                        &[],
                    )
                    .await
                    .unwrap();
                names.push(row.get::<_, String>(0));
            }
            names
        })),
    )
    .await;
    for (i, names) in seen.iter().enumerate() {
        assert!(
            names.iter().all(|n| *n == format!("app-{i}")),
            "client {i} saw {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_encoding_and_server_version_reach_the_client() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;
    let row = within(
        10,
        "SHOW client_encoding",
        client.query_one("SHOW client_encoding", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, String>(0), "UTF8");
    // psql prints the server version it learned from ParameterStatus.
    let mut cmd = psql_command(fx.port(), APP_USER, APP_PASSWORD, APP_DB);
    cmd.args(["-c", "\\echo :SERVER_VERSION_NUM"]);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim().starts_with("15"),
        "SERVER_VERSION_NUM: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
