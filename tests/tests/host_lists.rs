//! Several hosts per database (`host = "a,b"`, PgBouncer 1.24's
//! `load_balance_hosts`) and server host names kept per `dns_max_ttl`
//! (SHOW DNS_HOSTS). Two ways into one PostgreSQL stand in for two
//! hosts: its socket directory and 127.0.0.1; a missing socket
//! directory is a host that is down (refused at once).

use pgwolf_tests::clients::simple_rows;
use pgwolf_tests::proxy::Pgwolf;
use pgwolf_tests::{connect, userlist, within, PgServer, APP_DB, APP_PASSWORD, APP_USER};
use tokio_postgres::Client;

async fn server() -> PgServer {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    pg
}

fn pgwolf(pg: &PgServer, host: &str, more: &str) -> Pgwolf {
    let toml = format!(
        "admin_users = [\"{APP_USER}\"]\n\n[databases.{APP_DB}]\nhost = {host:?}\nport = {port}\n\
         pool_mode = \"transaction\"\npool_size = 4\n{more}",
        port = pg.port()
    );
    Pgwolf::start(&toml, &userlist(&[(APP_USER, APP_PASSWORD)]))
}

/// Opens `n` server connections at once (each client holds one in a
/// transaction) and returns SHOW SERVERS' `addr` of each, sorted.
async fn server_addrs(proxy: &Pgwolf, n: usize) -> Vec<String> {
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..n {
        let c = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
        within(10, "BEGIN", c.batch_execute("BEGIN; SELECT 1"))
            .await
            .unwrap();
        clients.push(c);
    }
    let console = connect(proxy.port(), APP_USER, APP_PASSWORD, "pgwolf").await;
    let rows = simple_rows(&console, "SHOW SERVERS").await.unwrap();
    let mut addrs: Vec<String> = rows.iter().map(|r| r["addr"].clone()).collect();
    addrs.sort();
    for c in &clients {
        c.batch_execute("COMMIT").await.unwrap();
    }
    addrs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_connections_over_the_hosts() {
    let pg = server().await;
    let host = format!("{},127.0.0.1", pg.socket_dir().display());
    let proxy = pgwolf(&pg, &host, "");
    let addrs = server_addrs(&proxy, 4).await;
    assert_eq!(addrs, ["127.0.0.1", "127.0.0.1", "unix", "unix"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_is_down_is_skipped() {
    let pg = server().await;
    // Round-robin: every connection that starts at the dead entry moves
    // on to the next, and no client sees an error.
    let host = format!(
        "/nonexistent-pgwolf-dir,127.0.0.1,{}",
        pg.socket_dir().display()
    );
    let proxy = pgwolf(&pg, &host, "");
    let addrs = server_addrs(&proxy, 4).await;
    assert_eq!(addrs.len(), 4, "{addrs:?}");
    // disable: the first entry that answers keeps every connection.
    let proxy = pgwolf(&pg, &host, "load_balance_hosts = \"disable\"\n");
    let addrs = server_addrs(&proxy, 4).await;
    assert_eq!(addrs, ["127.0.0.1"; 4]);
    assert!(
        proxy.log().contains("cannot reach this host of the list"),
        "the dead entry is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_are_cached_for_dns_max_ttl() {
    let pg = server().await;
    let proxy = pgwolf(&pg, "localhost", "");
    let client = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    client.simple_query("SELECT 1").await.unwrap();
    let console = connect(proxy.port(), APP_USER, APP_PASSWORD, "pgwolf").await;
    let hosts = simple_rows(&console, "SHOW DNS_HOSTS").await.unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["hostname"], "localhost");
    let ttl: u64 = hosts[0]["ttl"].parse().unwrap();
    assert!((1..=15).contains(&ttl), "{hosts:?}");
    assert!(hosts[0]["addrs"].contains("127.0.0.1"), "{hosts:?}");
    let zones = simple_rows(&console, "SHOW DNS_ZONES").await.unwrap();
    assert!(zones.is_empty(), "{zones:?}");
    let lists = simple_rows(&console, "SHOW LISTS").await.unwrap();
    let names = lists.iter().find(|r| r["list"] == "dns_names").unwrap();
    assert_eq!(names["items"], "1");
}
