//! A server whose node is lost: the database runs on a host of its own (a
//! network namespace) and is cut off by dropping every packet, so nothing
//! answers and no reset arrives, as when a Kubernetes node goes away.
//! Without keepalives and `tcp_user_timeout` a client of it would wait for
//! TCP's retransmissions (about 15 minutes) or forever when idle.

use pgwolf_tests::clients::{config_at, sqlstate, try_connect_with};
use pgwolf_tests::netns::{Cut, Lab};
use pgwolf_tests::{
    connect, userlist, within, PgOptions, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER,
};
use std::time::{Duration, Instant};

/// Both ways a lost server shows: a client sending to it (its data is never
/// acknowledged: `tcp_user_timeout`) and a client idle in a transaction on
/// it (nothing is sent: keepalive probes go unanswered). Each gets 08006
/// within its bound; once the host is back, new transactions run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_noticed_within_the_tcp_settings() {
    let lab = Lab::new(&["db"]);
    let pg = PgServer::start_with(PgOptions {
        netns_host: Some(lab.host("db").clone()),
        ..PgOptions::default()
    });
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    let toml = format!(
        "pool_mode = \"transaction\"\n\
         tcp_keepidle = \"2s\"\ntcp_keepintvl = \"1s\"\ntcp_keepcnt = 2\n\
         tcp_user_timeout = \"3s\"\nserver_connect_timeout = \"2s\"\n\n\
         [databases.{APP_DB}]\nhost = \"{}\"\nport = {}\npool_size = 4\n",
        pg.host(),
        pg.port()
    );
    let proxy = Pgwolf::start(&toml, &userlist(&[(APP_USER, APP_PASSWORD)]));
    let sender = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    let idle = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    for c in [&sender, &idle] {
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }

    let cut = Instant::now();
    lab.cut("db", Cut::All);
    let e = within(20, "the statement sent to the lost server", async {
        sender.simple_query("SELECT 1").await
    })
    .await
    .expect_err("a lost server cannot answer");
    let sending = cut.elapsed();
    assert_eq!(sqlstate(&e), Some("08006"), "{e:?}");
    within(
        20,
        "the idle transaction on the lost server to end",
        async {
            while !idle.is_closed() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    let idling = cut.elapsed();
    eprintln!(
        "lost server: a client sending got 08006 after {sending:?} (tcp_user_timeout 3s); \
         one idle in a transaction was closed after {idling:?} (keepalive 2s + 2 x 1s)"
    );
    assert!(
        sending >= Duration::from_millis(2500) && sending < Duration::from_secs(8),
        "{sending:?}"
    );
    assert!(idling < Duration::from_secs(10), "{idling:?}");

    lab.heal("db");
    let again = within(30, "a transaction once the host is back", async {
        loop {
            let config =
                pgwolf_tests::clients::config(proxy.port(), APP_USER, APP_PASSWORD, APP_DB);
            if let Ok(c) = try_connect_with(&config).await {
                if c.simple_query("SELECT 1").await.is_ok() {
                    return c;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    drop(again);
    // The server itself saw the lab's address, not loopback.
    let direct = config_at(&pg.host(), pg.port(), APP_USER, APP_PASSWORD, APP_DB);
    let c = try_connect_with(&direct).await.unwrap();
    let row = c
        .query_one("SELECT inet_server_addr()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("{}/32", pg.host()));
}
