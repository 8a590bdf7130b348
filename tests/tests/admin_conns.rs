//! The admin console on single connections: SHOW CLIENTS and SHOW SERVERS
//! as they change, and the commands that end connections or swap them:
//! KILL_CLIENT, KILL, RECONNECT with WAIT_CLOSE, and RELOAD of a pool size.

use pgwolf_tests::clients::{config, simple_value, try_connect_with};
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER};
use std::time::Duration;
use tokio_postgres::Client;

type Row = std::collections::BTreeMap<String, String>;

async fn fixture(pool_size: u32) -> Fixture {
    let opts = FixtureOptions::new(PoolMode::Transaction, pool_size)
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    Fixture::with(opts).await
}

async fn named(fx: &Fixture, db: &str, application_name: &str) -> Client {
    let mut c = config(fx.port(), APP_USER, APP_PASSWORD, db);
    c.application_name(application_name);
    try_connect_with(&c).await.expect("login")
}

async fn show(admin: &Client, what: &str) -> Vec<Row> {
    pgwolf_tests::clients::simple_rows(admin, what)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn by_app<'a>(rows: &'a [Row], app: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["application_name"] == app)
        .unwrap_or_else(|| panic!("no row of {app} in {rows:#?}"))
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("not a server error: {e}"))
}

async fn backend_pid(c: &Client) -> String {
    simple_value(c, "SELECT pg_backend_pid()")
        .await
        .unwrap()
        .unwrap()
}

/// The client is gone: its next query fails (the FATAL may or may not
/// have been read before the socket closed).
async fn assert_killed(c: &Client, who: &str) {
    let r = within(10, who, c.simple_query("SELECT 1")).await;
    let e = r.expect_err("a killed client's query must fail");
    if let Some(db) = e.as_db_error() {
        assert_eq!(db.code().code(), "57P01", "{who}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_servers_show_who_holds_and_who_waits() {
    let fx = fixture(1).await;
    let admin = named(&fx, "pgwolf", "console").await;
    let alpha = named(&fx, APP_DB, "alpha").await;
    alpha.batch_execute("BEGIN").await.unwrap();
    let pid = backend_pid(&alpha).await;
    let beta = named(&fx, APP_DB, "beta").await;
    let waiting = tokio::spawn(async move { simple_value(&beta, "SELECT 7").await.map(|_| beta) });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let clients = show(&admin, "SHOW CLIENTS").await;
    let (a, b) = (by_app(&clients, "alpha"), by_app(&clients, "beta"));
    assert_eq!((a["type"].as_str(), a["state"].as_str()), ("C", "active"));
    assert_eq!(b["state"], "waiting", "{b:?}");
    assert_eq!(b["link"], "", "a waiting client holds no server");
    assert_eq!(
        (a["user"].as_str(), a["database"].as_str()),
        (APP_USER, APP_DB)
    );
    assert_eq!(a["addr"], "127.0.0.1");
    assert_eq!(a["local_port"], fx.port().to_string());
    assert_ne!(a["ptr"], b["ptr"]);
    assert!(a["connect_time"].ends_with(" UTC"), "{a:?}");
    assert_eq!(by_app(&clients, "console")["database"], "pgwolf");

    let servers = show(&admin, "SHOW SERVERS").await;
    assert_eq!(servers.len(), 1, "{servers:#?}");
    let s = &servers[0];
    assert_eq!((s["type"].as_str(), s["state"].as_str()), ("S", "active"));
    assert_eq!(
        s["remote_pid"], pid,
        "the server alpha's transaction runs on"
    );
    assert_eq!(s["link"], a["ptr"]);
    assert_eq!(a["link"], s["ptr"]);
    assert_eq!(s["port"], fx.pg.port().to_string());
    assert_eq!(s["close_needed"], "0");
    assert_eq!(s["application_name"], "alpha");

    alpha.batch_execute("COMMIT").await.unwrap();
    let _beta = within(10, "beta after alpha's COMMIT", waiting)
        .await
        .unwrap()
        .unwrap();
    let servers = show(&admin, "SHOW SERVERS").await;
    assert_eq!(servers.len(), 1, "{servers:#?}");
    assert_eq!(
        (servers[0]["state"].as_str(), servers[0]["link"].as_str()),
        ("idle", "")
    );
    let clients = show(&admin, "SHOW CLIENTS").await;
    assert_eq!(by_app(&clients, "beta")["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_disconnects_that_client_only() {
    let fx = fixture(2).await;
    let admin = named(&fx, "pgwolf", "console").await;
    let idle = named(&fx, APP_DB, "idle").await;
    let busy = named(&fx, APP_DB, "busy").await;
    let other = named(&fx, APP_DB, "other").await;
    simple_value(&idle, "SELECT 1").await.unwrap();
    busy.batch_execute("BEGIN").await.unwrap();
    let busy_pid = backend_pid(&busy).await;

    let clients = show(&admin, "SHOW CLIENTS").await;
    let idle_ptr = by_app(&clients, "idle")["ptr"].clone();
    let busy_ptr = by_app(&clients, "busy")["ptr"].clone();
    admin
        .simple_query(&format!("KILL_CLIENT {idle_ptr}"))
        .await
        .unwrap();
    assert_killed(&idle, "the idle client").await;
    assert_eq!(
        simple_value(&other, "SELECT 2").await.unwrap().unwrap(),
        "2"
    );

    // Mid-transaction: the client goes and its server connection with it.
    admin
        .simple_query(&format!("KILL_CLIENT {busy_ptr}"))
        .await
        .unwrap();
    assert_killed(&busy, "the client in a transaction").await;
    let direct = fx.connect_direct().await;
    let gone = within(10, "the killed transaction's backend to exit", async {
        loop {
            let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {busy_pid}");
            if simple_value(&direct, &sql).await.unwrap().unwrap() == "0" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone);
    assert_eq!(
        simple_value(&other, "SELECT 3").await.unwrap().unwrap(),
        "3"
    );
    let clients = show(&admin, "SHOW CLIENTS").await;
    assert!(
        !clients
            .iter()
            .any(|r| r["ptr"] == idle_ptr || r["ptr"] == busy_ptr),
        "killed clients still listed: {clients:#?}"
    );

    let err = admin
        .simple_query("KILL_CLIENT 0x7ffffff0")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42704");
    let err = admin.simple_query("KILL_CLIENT bogus").await.unwrap_err();
    assert_eq!(code(&err), "22023");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_drops_the_database_s_clients_and_holds_new_ones_until_resume() {
    let fx = fixture(2).await;
    let admin = named(&fx, "pgbouncer", "console").await;
    let idle = named(&fx, APP_DB, "idle").await;
    let busy = named(&fx, APP_DB, "busy").await;
    simple_value(&idle, "SELECT 1").await.unwrap();
    busy.batch_execute("BEGIN").await.unwrap();

    admin.simple_query(&format!("KILL {APP_DB}")).await.unwrap();
    assert_killed(&idle, "an idle client").await;
    assert_killed(&busy, "a client in a transaction").await;
    // The console itself is not a client of appdb.
    assert_eq!(show(&admin, "SHOW VERSION").await.len(), 1);

    let late = named(&fx, APP_DB, "late").await;
    let waiting = tokio::spawn(async move { simple_value(&late, "SELECT 5").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a query ran on a killed database before RESUME"
    );
    admin
        .simple_query(&format!("RESUME {APP_DB}"))
        .await
        .unwrap();
    let v = within(10, "the held query after RESUME", waiting)
        .await
        .unwrap();
    assert_eq!(v.unwrap().unwrap(), "5");

    let err = admin.simple_query("KILL nosuchdb").await.unwrap_err();
    assert_eq!(code(&err), "3D000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_swaps_servers_and_wait_close_waits_for_the_busy_one() {
    let fx = fixture(2).await;
    let admin = named(&fx, "pgwolf", "console").await;
    let a = named(&fx, APP_DB, "a").await;
    let b = named(&fx, APP_DB, "b").await;
    let a_pid = backend_pid(&a).await;
    b.batch_execute("BEGIN").await.unwrap();
    let b_pid = backend_pid(&b).await;

    admin.simple_query("RECONNECT").await.unwrap();
    let a_new = backend_pid(&a).await;
    assert_ne!(a_new, a_pid, "the idle server was not replaced");
    let servers = show(&admin, "SHOW SERVERS").await;
    let old = servers
        .iter()
        .find(|s| s["remote_pid"] == b_pid)
        .unwrap_or_else(|| panic!("b's server missing: {servers:#?}"));
    assert_eq!(old["close_needed"], "1", "{old:?}");

    let console = admin;
    let wait =
        tokio::spawn(async move { console.simple_query("WAIT_CLOSE").await.map(|_| console) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !wait.is_finished(),
        "WAIT_CLOSE returned with b's old server open"
    );
    // The transaction in flight finishes on its old server, untouched.
    assert_eq!(backend_pid(&b).await, b_pid);
    b.batch_execute("COMMIT").await.unwrap();
    let admin = within(10, "WAIT_CLOSE after COMMIT", wait)
        .await
        .unwrap()
        .unwrap();
    let servers = show(&admin, "SHOW SERVERS").await;
    assert!(
        servers.iter().all(|s| s["close_needed"] == "0"),
        "{servers:#?}"
    );
    assert!(
        servers.iter().all(|s| s["remote_pid"] != b_pid),
        "{servers:#?}"
    );
    assert_ne!(backend_pid(&b).await, b_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_a_larger_pool() {
    let fx = fixture(1).await;
    let admin = named(&fx, "pgwolf", "console").await;
    let holder = named(&fx, APP_DB, "holder").await;
    holder.batch_execute("BEGIN").await.unwrap();
    let second = named(&fx, APP_DB, "second").await;
    let waiting = tokio::spawn(async move { simple_value(&second, "SELECT 9").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a pool of 1 served two transactions"
    );

    let bigger = fx
        .config_with("")
        .replace("pool_size = 1\n", "pool_size = 2\n");
    assert!(bigger.contains("pool_size = 2"), "{bigger}");
    fx.proxy.rewrite_config(&bigger);
    admin.simple_query("RELOAD").await.unwrap();
    let v = within(10, "the waiting client after RELOAD", waiting)
        .await
        .unwrap();
    assert_eq!(v.unwrap().unwrap(), "9");
    let databases = show(&admin, "SHOW DATABASES").await;
    let row = databases
        .iter()
        .find(|r| r["name"] == APP_DB)
        .unwrap_or_else(|| panic!("{databases:#?}"));
    assert_eq!(row["pool_size"], "2");
    holder.batch_execute("COMMIT").await.unwrap();
}
