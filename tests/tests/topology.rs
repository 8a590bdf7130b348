//! Following the primary with the `static` provider: two real PostgreSQL
//! servers, one a hot standby (standby.signal), pgwolf probing both with
//! `pg_is_in_recovery()`. A promotion is a failover pgwolf must follow; a
//! standby must never get a write, even when a stale topology source (a
//! stand-in Patroni REST API) calls it the primary. (Patroni-managed
//! clusters are in ha.rs.)

use pgwolf_tests::tools::give_to_server_user;
use pgwolf_tests::{
    connect, try_connect, userlist, within, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER,
};
use std::time::{Duration, Instant};

/// A server with `app`/`appdb` and a table `t`.
async fn server() -> PgServer {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    let c = connect(pg.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    c.batch_execute("CREATE TABLE t (v text)").await.unwrap();
    pg
}

/// Restarts `pg` as a hot standby with no upstream: read-only, in
/// recovery, until `pg_promote()`.
fn make_standby(pg: &mut PgServer) {
    pg.stop();
    let signal = pg.data_dir().join("standby.signal");
    std::fs::write(&signal, "").unwrap();
    give_to_server_user(&signal);
    pg.restart();
}

fn config(hosts: &[u16], poll: &str, wait: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        r#"pool_mode = "transaction"
admin_users = ["{APP_USER}"]

[clusters.pair]
provider = "static"
hosts = [{hosts}]
probe_user = "{APP_USER}"
probe_dbname = "{APP_DB}"
poll_interval = "{poll}"
failover_wait_timeout = "{wait}"

[databases.{APP_DB}]
cluster = "pair"
pool_size = 4
"#,
        hosts = hosts.join(", ")
    )
}

fn pgwolf(toml: &str) -> Pgwolf {
    Pgwolf::start(toml, &userlist(&[(APP_USER, APP_PASSWORD)]))
}

/// (in recovery, server port) as the client sees it.
async fn where_am_i(c: &tokio_postgres::Client) -> (bool, i32) {
    let row = c
        .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// SHOW TOPOLOGY on the admin console: (port, role, last_change) per
/// member of `pair`.
async fn show_topology(port: u16) -> Vec<(String, String, String)> {
    let admin = connect(port, APP_USER, APP_PASSWORD, "pgwolf").await;
    admin
        .simple_query("SHOW TOPOLOGY")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .filter(|r| r.get("cluster") == Some("pair"))
        .map(|r| {
            let cell = |c: &str| r.get(c).unwrap_or_default().to_string();
            (cell("port"), cell("role"), cell("last_change"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promotion_and_reads_go_to_the_standby() {
    let mut a = server().await;
    let mut b = server().await;
    make_standby(&mut b);
    let proxy = pgwolf(&config(&[a.port(), b.port()], "100ms", "20s"));

    let rw = within(
        20,
        "connect",
        connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB),
    )
    .await;
    assert_eq!(where_am_i(&rw).await, (false, a.port() as i32));
    rw.execute("INSERT INTO t VALUES ('on a')", &[])
        .await
        .unwrap();

    let before = show_topology(proxy.port()).await;
    let roles: Vec<(&str, &str)> = before
        .iter()
        .map(|(p, r, _)| (p.as_str(), r.as_str()))
        .collect();
    let (pa, pb) = (a.port().to_string(), b.port().to_string());
    assert_eq!(roles, [(pa.as_str(), "primary"), (pb.as_str(), "replica")]);
    assert!(before[0].2.ends_with(" UTC"), "last_change: {before:?}");

    let ro_db = format!("{APP_DB}_ro");
    let ro = connect(proxy.port(), APP_USER, APP_PASSWORD, &ro_db).await;
    assert_eq!(
        where_am_i(&ro).await,
        (true, b.port() as i32),
        "reads on the standby"
    );

    // Failover: the primary goes away, the standby is promoted a moment
    // later. A write issued in between waits for the new primary.
    a.stop();
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        let r = rw
            .execute("INSERT INTO t VALUES ('after failover')", &[])
            .await;
        (r.map_err(|e| e.to_string()), started.elapsed(), rw)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let promoted_at = Instant::now();
    b.superuser(APP_DB)
        .await
        .batch_execute("SELECT pg_promote()")
        .await
        .unwrap();
    let (first, waited, rw) = within(30, "the write during failover", writer)
        .await
        .unwrap();
    // The client's server connection was on the old primary: it is told so,
    // then a new transaction runs on the promoted server.
    if let Err(e) = &first {
        assert!(
            e.contains("failing over") || e.contains("57P01") || e.contains("terminat"),
            "{e}"
        );
    }
    let rw = match first {
        Ok(_) => rw,
        Err(_) => connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await,
    };
    let started = Instant::now();
    within(30, "a write after the promotion", async {
        rw.execute("INSERT INTO t VALUES ('on b')", &[])
            .await
            .expect("a write on the promoted server")
    })
    .await;
    eprintln!(
        "first write waited {waited:?}; write on the new primary {:?} after the promotion ({:?} for the last one)",
        promoted_at.elapsed(),
        started.elapsed()
    );
    assert_eq!(where_am_i(&rw).await, (false, b.port() as i32));
    // The console saw the change: b is primary, a unknown, and the time of
    // the change moved on.
    let after = show_topology(proxy.port()).await;
    let b_row = after.iter().find(|(p, ..)| *p == pb).unwrap();
    assert_eq!(b_row.1, "primary", "{after:?}");
    assert!(b_row.2 >= before[0].2, "{before:?} then {after:?}");
    assert_ne!(after, before);
    let direct_b = connect(b.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    let n: i64 = direct_b
        .query_one("SELECT count(*) FROM t WHERE v = 'on b'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// A stand-in for Patroni's REST API that always names `port` the leader,
/// whatever the server there is: a topology source gone stale.
fn stale_patroni(port: u16) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rest = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let body = format!(
                r#"{{"members":[{{"name":"a","role":"leader","state":"running","host":"127.0.0.1","port":{port}}}]}}"#
            );
            let _ = std::io::Write::write_all(
                &mut s,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_listed_as_primary_gets_no_write() {
    // The topology says the server is primary; the server is a standby. The
    // connection's own check (in_hot_standby) must refuse it.
    let mut a = server().await;
    make_standby(&mut a);
    let rest = stale_patroni(a.port());
    let toml = format!(
        r#"pool_mode = "transaction"
admin_users = ["{APP_USER}"]

[clusters.pair]
provider = "patroni"
patroni_urls = ["http://127.0.0.1:{rest}"]
poll_interval = "100ms"
failover_wait_timeout = "2s"

[databases.{APP_DB}]
cluster = "pair"
pool_size = 4
"#
    );
    let proxy = pgwolf(&toml);
    let started = Instant::now();
    let err = match try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await {
        Err(e) => e,
        Ok(c) => c
            .execute("INSERT INTO t VALUES ('must not land')", &[])
            .await
            .expect_err("a write through pgwolf to a standby"),
    };
    let db = err
        .as_db_error()
        .map(|d| (d.code().code().to_string(), d.message().to_string()));
    let (code, message) = db.unwrap_or_else(|| panic!("not a server-style error: {err}"));
    assert_eq!(code, "08006", "{message}");
    assert!(message.contains("cluster \"pair\""), "{message}");
    assert!(message.contains("is in recovery"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by failover_wait_timeout"
    );
    let direct = connect(a.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    let n: i64 = direct
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_primary_at_all_is_a_bounded_clear_error() {
    let mut b = server().await;
    make_standby(&mut b);
    let proxy = pgwolf(&config(&[b.port()], "100ms", "1s"));
    let started = Instant::now();
    let err = match try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await {
        Err(e) => e,
        Ok(c) => c.execute("SELECT 1", &[]).await.unwrap_err(),
    };
    let elapsed = started.elapsed();
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains("no primary of cluster \"pair\""),
        "{}",
        db.message()
    );
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // Reads still work: the standby serves the read-only alias.
    let ro = connect(
        proxy.port(),
        APP_USER,
        APP_PASSWORD,
        &format!("{APP_DB}_ro"),
    )
    .await;
    assert_eq!(where_am_i(&ro).await, (true, b.port() as i32));
}
