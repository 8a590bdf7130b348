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
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
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
    // A real standby: the static provider gives reads only to a standby
    // that streams while a primary is known.
    let b = PgServer::standby_of(&a);
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
        (r.map_err(|e| format!("{e:?}")), started.elapsed(), rw)
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

/// A stand-in for Patroni's REST API that names whatever port `leader`
/// holds the leader, whatever the server there is: a topology source that
/// the test moves (a failover) or leaves stale.
fn fake_patroni(leader: Arc<AtomicU16>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rest = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let port = leader.load(Ordering::SeqCst);
            let body = format!(
                r#"{{"members":[{{"name":"m{port}","role":"leader","state":"running","host":"127.0.0.1","port":{port}}}]}}"#
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

/// pgwolf on the fake Patroni API at `rest`, `extra` lines at the top and
/// `wait` as failover_wait_timeout.
fn on_fake_patroni(rest: u16, extra: &str, wait: &str) -> Pgwolf {
    pgwolf(&format!(
        r#"pool_mode = "transaction"
{extra}
[clusters.pair]
provider = "patroni"
patroni_urls = ["http://127.0.0.1:{rest}"]
poll_interval = "100ms"
failover_wait_timeout = "{wait}"

[databases.{APP_DB}]
cluster = "pair"
pool_size = 4
"#
    ))
}

fn stale_patroni(port: u16) -> u16 {
    fake_patroni(Arc::new(AtomicU16::new(port)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_listed_as_primary_gets_no_write() {
    // The topology says the server is primary; the server is a standby. The
    // connection's own check (in_hot_standby) must refuse it.
    let mut a = server().await;
    make_standby(&mut a);
    let rest = stale_patroni(a.port());
    let proxy = on_fake_patroni(rest, &format!("admin_users = [\"{APP_USER}\"]\n"), "2s");
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

/// The leader moves (the fake REST API names another member, as Patroni
/// does after a failover) while clients hold server connections to the old
/// one: one idle inside a transaction, one waiting on a 30 s statement.
/// Both are ended at once, not at check-in (which on a lost node would
/// never come): the one with a request in flight gets 08007 (its outcome
/// is unknown), the idle one 08006 and a closed connection; its
/// uncommitted write is not on the old member; a new transaction writes
/// on the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_on_a_member_that_lost_its_role_ends_at_once() {
    let a = server().await;
    let b = server().await;
    let leader = Arc::new(AtomicU16::new(a.port()));
    let rest = fake_patroni(leader.clone());
    let proxy = on_fake_patroni(rest, "", "5s");
    let idle = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    idle.batch_execute("BEGIN; INSERT INTO t VALUES ('uncommitted')")
        .await
        .unwrap();
    assert_eq!(where_am_i(&idle).await, (false, a.port() as i32));
    let busy = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    let sleeper = tokio::spawn(async move {
        let r = busy.simple_query("SELECT pg_sleep(30)").await;
        (r.map(drop), Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let moved = Instant::now();
    leader.store(b.port(), Ordering::SeqCst);
    let (slept, answered) = within(10, "the statement on the old leader", sleeper)
        .await
        .unwrap();
    let e = slept.expect_err("the old leader's statement cannot finish through pgwolf");
    let d = e
        .as_db_error()
        .unwrap_or_else(|| panic!("a bare disconnect: {e:?}"));
    assert_eq!(d.code().code(), "08007", "{}", d.message());
    assert!(d.message().contains("cluster \"pair\""), "{}", d.message());
    let waited = answered - moved;
    assert!(
        waited < Duration::from_secs(3),
        "answered {waited:?} after the move"
    );
    within(10, "the idle transaction's connection to close", async {
        while !idle.is_closed() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!("in-flight statement answered {waited:?} after the leader moved; idle one closed {:?} after", moved.elapsed());
    within(5, "a log line for each transaction ended", async {
        while proxy
            .log()
            .matches("its server's member lost its role")
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let fresh = connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    fresh
        .execute("INSERT INTO t VALUES ('on b')", &[])
        .await
        .unwrap();
    assert_eq!(where_am_i(&fresh).await, (false, b.port() as i32));
    let on_a = connect(a.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    within(10, "the old member to roll the transaction back", async {
        loop {
            let n: i64 = on_a
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let rows: i64 = on_a
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 0,
        "nothing of the ended transaction is on the old member"
    );
}

/// The leader is a member that takes the TCP connection and never answers
/// (a hung node: its kernel accepts, its PostgreSQL is stuck), so a new
/// server connection's login waits. When the topology names another
/// leader, pgwolf stops waiting on the old one and connects to the new
/// one: the client's wait ends about when the leader moves, not after
/// server_login_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_hangs_moves_on_when_the_leader_moves() {
    let b = server().await;
    let silent = pgwolf_tests::scripted::ScriptedServer::start(|mut peer| async move {
        let _ = peer.startup(b"N").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let leader = Arc::new(AtomicU16::new(silent.port()));
    let rest = fake_patroni(leader.clone());
    let proxy = on_fake_patroni(
        rest,
        "server_connect_timeout = \"10s\"\nserver_login_timeout = \"10s\"\n",
        "20s",
    );
    let port = proxy.port();
    let login = tokio::spawn(async move {
        let c = connect(port, APP_USER, APP_PASSWORD, APP_DB).await;
        let done = Instant::now();
        (where_am_i(&c).await, done)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!login.is_finished(), "the silent leader answered");
    let moved = Instant::now();
    leader.store(b.port(), Ordering::SeqCst);
    let (at, done) = within(20, "the login after the leader moved", login)
        .await
        .unwrap();
    assert_eq!(at, (false, b.port() as i32));
    let waited = done.saturating_duration_since(moved);
    eprintln!("login done {waited:?} after the leader moved (server_login_timeout 10s)");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}
