//! Back-pressure through the pump: a client that stops reading a huge
//! result makes the server wait (pgwolf does not buffer the result set),
//! and a client that floods queries while its server is busy is slowed
//! by TCP, not buffered without limit. Raw sockets with trust auth, so
//! the test decides exactly when bytes are read.

use pgwolf_tests::clients::simple_value;
use pgwolf_tests::wire::{message, startup_packet};
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_USER};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// Logs in (trust) and reads to the first ReadyForQuery.
async fn raw_login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let startup = startup_packet(&[("user", APP_USER), ("database", APP_DB)]);
    s.write_all(&startup).await.unwrap();
    let mut seen = Vec::new();
    within(30, "raw login", async {
        let mut buf = [0u8; 4096];
        // ReadyForQuery 'I' is the last thing the welcome sends.
        while !seen.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "pgwolf closed during login: {seen:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    s
}

async fn fixture() -> Fixture {
    Fixture::with(FixtureOptions::new(PoolMode::Transaction, 2).auth_type("trust")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_makes_the_server_wait() {
    let fx = fixture().await;
    let mut s = raw_login(fx.port()).await;
    let before = fx.proxy.rss_kib();
    // About 1.6 GB of result, which no buffer may hold.
    s.write_all(&query(
        "SELECT repeat('x', 8000) FROM generate_series(1, 200000)",
    ))
    .await
    .unwrap();
    let direct = fx.connect_direct().await;
    let sql = "SELECT count(*) FROM pg_stat_activity \
               WHERE wait_event = 'ClientWrite' AND query LIKE 'SELECT repeat%'";
    within(30, "the backend to block writing to pgwolf", async {
        while simple_value(&direct, sql).await.unwrap().as_deref() != Some("1") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = fx.proxy.rss_kib();
    println!("pgwolf RSS {before} KiB before, {during} KiB with the client not reading");
    assert!(
        during < before + 16 * 1024,
        "pgwolf buffered the result: RSS {before} -> {during} KiB"
    );
    // Reading again lets the result flow.
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    within(30, "the result flowing again", async {
        while got < 64 << 20 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got += n;
        }
    })
    .await;
    drop(s);
    let c = fx.connect().await;
    assert_eq!(
        simple_value(&c, "SELECT 1").await.unwrap().as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_a_busy_server_is_slowed_not_buffered() {
    let fx = fixture().await;
    let s = raw_login(fx.port()).await;
    let before = fx.proxy.rss_kib();
    let (mut rd, mut wr) = s.into_split();
    // The server is busy for 5 s; the client never reads meanwhile.
    wr.write_all(&query("SELECT pg_sleep(5)")).await.unwrap();
    let chunk: Vec<u8> = query("SELECT 1").repeat(4096);
    let mut written = 0usize;
    let flood = async {
        loop {
            wr.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    };
    // Writes block once the socket buffers fill: 3 s of trying, with
    // pgwolf's memory read half way and at the end.
    let mut half = 0;
    let probe = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        half = fx.proxy.rss_kib();
        std::future::pending::<()>().await
    };
    let both = async { tokio::join!(flood, probe) };
    let _ = tokio::time::timeout(Duration::from_secs(3), both).await;
    let during = fx.proxy.rss_kib();
    println!(
        "flood: {written} bytes written in 3 s; pgwolf RSS {before} -> {half} (1.5 s) -> {during} KiB (3 s)"
    );
    // Once the socket buffers are full pgwolf reads no more: its memory
    // has stopped growing. (It keeps a small entry per request in flight:
    // bounded by what the buffers took, not by how long the flood lasts.)
    assert!(
        during <= half + 1024,
        "pgwolf kept taking the flood in: {half} -> {during} KiB"
    );
    assert!(
        written < 256 << 20,
        "{written} bytes went in without back-pressure"
    );
    // max_pipelined_requests (10,000) bounds the requests in flight, so
    // the records for them too: 0.75 MiB here, 15.5 MiB before the limit.
    assert!(
        during < before + 4 * 1024,
        "pgwolf buffered the flood: RSS {before} -> {during} KiB"
    );
    drop(wr);
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), rd.read_to_end(&mut sink)).await;
    let c = fx.connect().await;
    assert_eq!(
        simple_value(&c, "SELECT 1").await.unwrap().as_deref(),
        Some("1")
    );
}

/// A client that legitimately pipelines far more requests than
/// max_pipelined_requests (tokio-postgres sends each query as soon as it
/// is issued) gets every answer: the limit only paces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_longer_than_the_limit_is_paced_not_stuck() {
    let opts =
        FixtureOptions::new(PoolMode::Transaction, 2).setting("max_pipelined_requests = 2048");
    let fx = Fixture::with(opts).await;
    let c = fx.connect().await;
    let stmt = c.prepare("SELECT $1::int4 * 2").await.unwrap();
    let n = 20_000i32;
    let queries = (0..n).map(|i| {
        let (c, stmt) = (&c, &stmt);
        async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
    });
    let answers = within(
        120,
        "20,000 pipelined queries",
        futures_util::future::join_all(queries),
    )
    .await;
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a.unwrap(), 2 * i as i32);
    }
}
