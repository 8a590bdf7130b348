//! Volume through pgwolf: a 200 MB result streamed with bounded proxy memory,
//! and 2,000 idle clients held at once.

use futures_util::future::join_all;
use futures_util::StreamExt;
use pgwolf_tests::clients::simple_value;
use pgwolf_tests::tools::raise_fd_limit;
use pgwolf_tests::{try_connect, within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_USER};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RSS_LIMIT_KIB: u64 = 64 * 1024;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_of_200_mb_streams_with_bounded_memory() {
    // A pool of one: `query_raw` prepares a named statement first.
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;
    let baseline = fx.proxy.rss_kib();

    // Sample pgwolf's RSS every 20 ms while the result flows.
    let pid = fx.proxy.pid();
    let max_rss = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (max_rss, done) = (max_rss.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                max_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let sql = "SELECT repeat('x', 1000) FROM generate_series(1, 200000)";
    let stream = within(
        30,
        "start 200 MB query",
        client.query_raw(sql, std::iter::empty::<i32>()),
    )
    .await
    .unwrap();
    let mut stream = pin!(stream);
    let (mut rows, mut bytes) = (0u64, 0u64);
    let read_all = async {
        while let Some(row) = stream.next().await {
            let row = row.unwrap();
            bytes += row.get::<_, &str>(0).len() as u64;
            rows += 1;
            if rows == 1_000 {
                // A slow reader: the server keeps producing; pgwolf must push
                // back instead of buffering the result.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                max_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
            }
        }
    };
    within(300, "stream 200 MB", read_all).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    assert_eq!(rows, 200_000);
    assert_eq!(bytes, 200_000_000);
    let max = max_rss.load(Ordering::Relaxed);
    eprintln!("pgwolf RSS: baseline {baseline} KiB, max during stream {max} KiB");
    assert!(
        max < RSS_LIMIT_KIB,
        "pgwolf RSS reached {max} KiB (baseline {baseline} KiB) streaming 200 MB"
    );
    let one = within(10, "query after stream", simple_value(&client, "SELECT 1"))
        .await
        .unwrap();
    assert_eq!(one.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_clients() {
    const CLIENTS: usize = 2_000;
    // One socket here and one in pgwolf per client, plus slack.
    let limit = raise_fd_limit(65_536);
    assert!(
        limit >= 2 * CLIENTS as u64 + 500,
        "open-files limit is {limit}; run through scripts/test (ulimit -n 65536)"
    );
    // trust: this test is about connections, not SCRAM's deliberate cost.
    let fx = Fixture::with(FixtureOptions::new(PoolMode::Transaction, 10).auth_type("trust")).await;
    let port = fx.port();

    let mut clients = Vec::with_capacity(CLIENTS);
    for batch in 0..CLIENTS / 100 {
        let connected = within(
            120,
            "connect a batch of 100 clients",
            join_all((0..100).map(|_| try_connect(port, APP_USER, "", APP_DB))),
        )
        .await;
        for (i, c) in connected.into_iter().enumerate() {
            clients.push(
                c.unwrap_or_else(|e| panic!("client {} failed to connect: {e:?}", batch * 100 + i)),
            );
        }
    }
    assert_eq!(clients.len(), CLIENTS);
    eprintln!(
        "pgwolf with {CLIENTS} clients: RSS {} KiB, {} fds",
        fx.proxy.rss_kib(),
        fx.proxy.open_fds()
    );

    // All idle at once; now every one of them runs a query.
    for (batch, chunk) in clients.chunks(250).enumerate() {
        let results = within(
            120,
            "SELECT 1 from a batch of 250 clients",
            join_all(chunk.iter().map(|c| simple_value(c, "SELECT 1"))),
        )
        .await;
        for (i, r) in results.into_iter().enumerate() {
            let row =
                r.unwrap_or_else(|e| panic!("client {} failed SELECT 1: {e:?}", batch * 250 + i));
            assert_eq!(row.as_deref(), Some("1"));
        }
    }
    assert!(clients.iter().all(|c| !c.is_closed()));
    let backends = fx.pg.backend_count(APP_USER, APP_DB).await;
    assert!(
        backends <= 10,
        "{backends} server connections for a pool of 10"
    );
}
