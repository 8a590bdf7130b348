//! The HTTP listener: /metrics parses as Prometheus text format (with
//! prometheus_client's parser) and its counters move with a pgbench run;
//! /healthz, /readyz and /topology answer.

use pgwolf_tests::tools::workspace_dir;
use pgwolf_tests::{free_port, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// (status, body) of a GET.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Samples as `name{labels}` → value, through prometheus_client's parser.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut child = Command::new("python3")
        .arg(workspace_dir().join("tests/python/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not Prometheus text format: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_pgbench() {
    let http = free_port();
    let opts = FixtureOptions::new(PoolMode::Transaction, 4)
        .setting(&format!("http_listen = \"127.0.0.1:{http}\""));
    let fx = Fixture::with(opts).await;
    fx.pgbench_init_direct(1);

    let pool = format!("database=\"{APP_DB}\",user=\"{APP_USER}\"");
    let run = fx.pgbench(&["-c", "4", "-j", "2", "-t", "50", "-S"]);
    assert_eq!(run.assert_clean(), 200);
    let (status, text) = get(http, "/metrics");
    assert_eq!(status, 200);
    let first = samples(&text);
    let xacts = first[&format!("pgwolf_transactions_total{{{pool}}}")];
    assert!(xacts >= 200.0, "{xacts} transactions after 200:\n{text}");
    for name in [
        "pgwolf_queries_total",
        "pgwolf_client_bytes_received_total",
        "pgwolf_client_bytes_sent_total",
        "pgwolf_transaction_seconds_total",
        "pgwolf_query_seconds_total",
        "pgwolf_server_connects_total",
    ] {
        let v = first[&format!("{name}{{{pool}}}")];
        assert!(v > 0.0, "{name} = {v}");
    }
    assert!(
        first.contains_key("process_resident_memory_bytes{}"),
        "process metrics"
    );
    let count = first[&format!("pgwolf_transaction_duration_seconds_count{{{pool}}}")];
    assert!(count >= 200.0, "transaction histogram count {count}");
    // The parser's output sorts labels: le comes between database and user.
    let inf_key = format!(
        "pgwolf_query_duration_seconds_bucket{{database=\"{APP_DB}\",le=\"+Inf\",user=\"{APP_USER}\"}}"
    );
    let inf = first[&inf_key];
    assert!(inf >= 200.0, "query histogram +Inf bucket {inf}");
    assert!(
        !text.contains(APP_PASSWORD) && !text.contains("SCRAM-SHA-256$"),
        "no secret in metrics"
    );

    let run = fx.pgbench(&["-c", "4", "-j", "2", "-t", "25", "-S"]);
    assert_eq!(run.assert_clean(), 100);
    let second = samples(&get(http, "/metrics").1);
    let moved = second[&format!("pgwolf_transactions_total{{{pool}}}")] - xacts;
    assert!(moved >= 100.0, "transactions moved by {moved}");
    assert_eq!(second[&format!("pgwolf_pool_size{{{pool}}}")], 4.0);

    // The pool's four connections held in transactions: a fifth client
    // waits until one ends, and the wait histogram has it.
    let mut holders = Vec::new();
    for _ in 0..4 {
        let c = fx.connect().await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        holders.push(c);
    }
    let fifth = fx.connect().await;
    let waiting = tokio::spawn(async move { fifth.simple_query("SELECT 1").await.map(drop) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    holders[0].batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().unwrap();
    let third = samples(&get(http, "/metrics").1);
    let waits = third[&format!("pgwolf_wait_duration_seconds_count{{{pool}}}")];
    let waited = third[&format!("pgwolf_wait_duration_seconds_sum{{{pool}}}")];
    assert!(waits >= 1.0 && waited >= 0.25, "{waits} waits, {waited} s");

    assert_eq!(get(http, "/healthz"), (200, "ok\n".into()));
    assert_eq!(
        get(http, "/readyz").0,
        200,
        "no cluster: ready once listening"
    );
    let (status, topology) = get(http, "/topology");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&topology).unwrap();
    assert!(v["clusters"].as_object().unwrap().is_empty(), "{v}");
    assert_eq!(get(http, "/nope").0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_a_primary() {
    // A cluster whose only member does not exist: no primary, not ready.
    let http = free_port();
    let dead = free_port();
    let opts = FixtureOptions::new(PoolMode::Transaction, 2).setting(&format!(
        "http_listen = \"127.0.0.1:{http}\"\n\n[clusters.gone]\nprovider = \"static\"\nhosts = [\"127.0.0.1:{dead}\"]\nprobe_user = \"{APP_USER}\"\npoll_interval = \"100ms\"\n\n[databases.lost]\ncluster = \"gone\"\n"
    ));
    let fx = Fixture::with(opts).await;
    let (status, body) = get(http, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no primary known for cluster gone"), "{body}");
    let (_, topology) = get(http, "/topology");
    let v: serde_json::Value = serde_json::from_str(&topology).unwrap();
    assert_eq!(
        v["clusters"]["gone"]["primary"],
        serde_json::Value::Null,
        "{v}"
    );
    let m = samples(&get(http, "/metrics").1);
    assert_eq!(m[r#"pgwolf_cluster_primary_known{cluster="gone"}"#], 0.0);

    // The member comes to exist (the fixture's own server): ready, with a
    // primary in /topology and the metrics, and the change's time.
    let config = fx.config_with("").replace(
        &format!("127.0.0.1:{dead}"),
        &format!("127.0.0.1:{}", fx.pg.port()),
    );
    fx.proxy.rewrite_config(&config);
    fx.proxy.signal("HUP");
    let ready = pgwolf_tests::time::eventually(Duration::from_secs(20), || async {
        (get(http, "/readyz").0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "{}", get(http, "/readyz").1);
    let v: serde_json::Value = serde_json::from_str(&get(http, "/topology").1).unwrap();
    let gone = &v["clusters"]["gone"];
    assert!(gone["primary"].is_string(), "{v}");
    assert!(gone["last_change"].is_string(), "{v}");
    let m = samples(&get(http, "/metrics").1);
    assert_eq!(m[r#"pgwolf_cluster_primary_known{cluster="gone"}"#], 1.0);

    // A refused login is counted.
    let failures = |m: &BTreeMap<String, f64>| m["pgwolf_auth_failures_total{}"];
    let before = failures(&m);
    let refused = pgwolf_tests::try_connect(fx.port(), APP_USER, "wrong", APP_DB).await;
    assert!(refused.is_err());
    let after = failures(&samples(&get(http, "/metrics").1));
    assert_eq!(after, before + 1.0);
    drop(fx);
}
