//! SHOW FDS, SOCKETS and MEM: what the process holds, read from the
//! kernel, with each connection named by its user and database and no
//! secret anywhere.

use pgwolf_tests::clients::simple_rows;
use pgwolf_tests::time::eventually;
use pgwolf_tests::wire::{message, read_message, startup_packet};
use pgwolf_tests::{connect, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

type Row = std::collections::BTreeMap<String, String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fds_sockets_and_memory_as_the_kernel_sees_them() {
    let opts = FixtureOptions::new(PoolMode::Session, 3)
        .auth_type("trust")
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let app = fx.connect().await;
    app.simple_query("SELECT 1").await.unwrap();
    let console = connect(fx.port(), APP_USER, APP_PASSWORD, "pgwolf").await;

    let fds = simple_rows(&console, "SHOW FDS").await.unwrap();
    let task = |t: &str| -> Vec<&Row> { fds.iter().filter(|r| r["task"] == t).collect() };
    let pooler = task("pooler");
    assert!(
        pooler
            .iter()
            .any(|r| r["local_port"] == fx.port().to_string()),
        "the listener: {fds:#?}"
    );
    // The app's client and its session's server connection, by name;
    // the console is a client too.
    let clients = task("client");
    assert!(
        clients
            .iter()
            .any(|r| r["database"] == APP_DB && r["user"] == APP_USER),
        "{fds:#?}"
    );
    assert!(
        clients.iter().any(|r| r["database"] == "pgwolf"),
        "{fds:#?}"
    );
    let servers = task("server");
    assert_eq!(servers.len(), 1, "{fds:#?}");
    assert_eq!(servers[0]["database"], APP_DB);
    assert_eq!(servers[0]["port"], fx.pg.port().to_string());
    assert!(!task("other").is_empty(), "epoll, the log: {fds:#?}");
    let all: String = format!("{fds:?}");
    assert!(!all.contains(APP_PASSWORD), "a secret in SHOW FDS");

    // A client that asks for 8 MB and reads none of it: pgwolf's send
    // queue to it fills, which SHOW SOCKETS shows.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", fx.port()))
        .await
        .unwrap();
    let login = [
        ("user", APP_USER),
        ("database", APP_DB),
        ("application_name", "stalled"),
    ];
    stalled.write_all(&startup_packet(&login)).await.unwrap();
    while read_message(&mut stalled).await.0 != b'Z' {}
    let query = message(b'Q', b"SELECT repeat('x', 8000000)\0");
    stalled.write_all(&query).await.unwrap();
    let full = eventually(Duration::from_secs(15), || async {
        let rows = simple_rows(&console, "SHOW SOCKETS").await.unwrap();
        let row = rows
            .iter()
            .find(|r| r["application_name"] == "stalled")?
            .clone();
        (row["send_queue"].parse::<u64>().unwrap() > 64 * 1024).then_some((row, rows))
    })
    .await;
    let (row, sockets) = full.expect("the stalled client's send queue never filled");
    assert_eq!(
        (row["type"].as_str(), row["recv_queue"].as_str()),
        ("C", "0")
    );
    let kinds: Vec<&str> = sockets.iter().map(|r| r["type"].as_str()).collect();
    assert!(kinds.contains(&"S"), "{sockets:#?}");
    for r in &sockets {
        r["recv_queue"].parse::<u64>().expect("a byte count");
    }

    let mem = simple_rows(&console, "SHOW MEM").await.unwrap();
    let rss = mem.iter().find(|r| r["name"] == "rss").expect("rss row");
    let bytes: u64 = rss["used"].parse().unwrap();
    let measured = fx.proxy.rss_kib() * 1024;
    assert!(
        bytes > measured / 2 && bytes < measured * 2,
        "SHOW MEM rss {bytes} vs /proc {measured}"
    );
}
