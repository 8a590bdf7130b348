//! COPY through pgwolf: 100,000 rows in with COPY FROM STDIN and back out
//! with COPY TO STDOUT, in transaction and session mode.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pgwolf_tests::clients::sqlstate;
use pgwolf_tests::{within, Fixture, PoolMode};
use std::pin::pin;

const ROWS: usize = 100_000;

async fn copy_round_trip(mode: PoolMode) {
    // A pool of one: copy_in/copy_out prepare a named statement first.
    let fx = Fixture::new(mode, 1).await;
    let client = fx.connect().await;
    client
        .batch_execute("CREATE TABLE items (id int, name text)")
        .await
        .unwrap();

    let sink = within(
        10,
        "COPY FROM STDIN",
        client.copy_in("COPY items (id, name) FROM STDIN"),
    )
    .await
    .unwrap();
    let mut sink = pin!(sink);
    let mut chunk = String::new();
    for i in 0..ROWS {
        chunk.push_str(&format!("{i}\titem number {i}\n"));
        if chunk.len() > 64 * 1024 {
            sink.send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    sink.send(Bytes::from(chunk)).await.unwrap();
    let copied = within(60, "finish COPY FROM STDIN", sink.finish())
        .await
        .unwrap();
    assert_eq!(copied, ROWS as u64);

    let direct = fx.connect_direct().await;
    let row = direct
        .query_one("SELECT count(*), sum(id) FROM items", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), ROWS as i64);

    let stream = within(
        10,
        "COPY TO STDOUT",
        client.copy_out("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT"),
    )
    .await
    .unwrap();
    let mut stream = pin!(stream);
    let mut data = Vec::new();
    while let Some(chunk) = within(60, "COPY TO STDOUT data", stream.next()).await {
        data.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ROWS);
    assert_eq!(lines[0], "0\titem number 0");
    assert_eq!(
        lines[ROWS - 1],
        format!("{}\titem number {}", ROWS - 1, ROWS - 1)
    );

    // The connection is in a clean state afterwards.
    let row = within(
        10,
        "query after COPY",
        client.query_one("SELECT count(*) FROM items", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i64>(0), ROWS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_transaction_mode() {
    copy_round_trip(PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_session_mode() {
    copy_round_trip(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_with_bad_data_fails_and_connection_recovers() {
    let fx = Fixture::new(PoolMode::Transaction, 1).await;
    let client = fx.connect().await;
    client
        .batch_execute("CREATE TABLE nums (n int)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY nums FROM STDIN").await.unwrap();
    let mut sink = pin!(sink);
    sink.send(Bytes::from_static(b"1\n2\nnot-a-number\n4\n"))
        .await
        .unwrap();
    let err = within(15, "failing COPY", sink.finish()).await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("22P02"), "{err:?}");
    let row = within(
        10,
        "query after failed COPY",
        client.query_one("SELECT count(*) FROM nums", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    // Another client on the same (only) server connection is unaffected.
    let other = fx.connect().await;
    let row = within(10, "other client", other.query_one("SELECT 2", &[]))
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
}
