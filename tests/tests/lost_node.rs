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

/// What the writers saw: acknowledged values, errors with when they came,
/// and each request's start and end.
#[derive(Default)]
struct Writes {
    acked: std::sync::Mutex<Vec<(i64, Instant)>>,
    errors: std::sync::Mutex<Vec<(Instant, String)>>,
    /// (started, answered) of every request that had to wait over 1 s.
    slow: std::sync::Mutex<Vec<(Instant, Instant)>>,
    next: std::sync::atomic::AtomicI64,
}

impl Writes {
    /// The longest any request waited (0 when none waited over 1 s).
    fn longest_wait(&self) -> Duration {
        let slow = self.slow.lock().unwrap();
        slow.iter().map(|(s, a)| *a - *s).max().unwrap_or_default()
    }

    /// Requests acknowledged after `from` and before `to`.
    fn acked_between(&self, from: Instant, to: Instant) -> usize {
        let acked = self.acked.lock().unwrap();
        acked
            .iter()
            .filter(|(_, at)| *at > from && *at < to)
            .count()
    }

    /// The errors counted by SQLSTATE ("bare" for no ErrorResponse).
    fn errors_by_code(&self) -> std::collections::BTreeMap<String, usize> {
        let mut by_code = std::collections::BTreeMap::new();
        for (_, m) in self.errors.lock().unwrap().iter() {
            let code = m.split(':').next().unwrap_or_default().to_string();
            *by_code.entry(code).or_default() += 1;
        }
        by_code
    }
}

fn described(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        // No ErrorResponse: the connection just ended. A defect wherever
        // PostgreSQL itself would have answered.
        None => format!("bare: {e}"),
    }
}

/// One writer: autocommit INSERTs until `stop`, reconnecting after an error
/// that closed its connection.
async fn writer(
    port: u16,
    w: std::sync::Arc<Writes>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    worker(port, pgwolf_tests::ha::HA_APP_DB, w, stop).await
}

/// One reader on the read-only alias: `SELECT`s until `stop`.
async fn reader(
    port: u16,
    w: std::sync::Arc<Writes>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    worker(
        port,
        &format!("{}_ro", pgwolf_tests::ha::HA_APP_DB),
        w,
        stop,
    )
    .await
}

/// A client looping one statement through pgwolf on `db` (INSERTs on the
/// primary database, a SELECT on its read-only alias), reconnecting after
/// an error that ended its connection.
async fn worker(
    port: u16,
    db: &str,
    w: std::sync::Arc<Writes>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use pgwolf_tests::ha::{HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
    use std::sync::atomic::Ordering;
    let writes = db == HA_APP_DB;
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match pgwolf_tests::try_connect(port, HA_APP_USER, HA_APP_PASSWORD, db).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    w.errors
                        .lock()
                        .unwrap()
                        .push((Instant::now(), described(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().unwrap();
        let v = w.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let sql = if writes {
            format!("INSERT INTO acks VALUES ({v})")
        } else {
            "SELECT count(*) FROM pg_class".to_string()
        };
        let r = c.batch_execute(&sql).await;
        let answered = Instant::now();
        if answered - started > Duration::from_secs(1) {
            w.slow.lock().unwrap().push((started, answered));
        }
        match r {
            Ok(()) => w.acked.lock().unwrap().push((v, answered)),
            Err(e) => {
                w.errors.lock().unwrap().push((answered, described(&e)));
                // A FATAL ends the connection; the driver may not have seen
                // the close yet, and a request on it would only fail again.
                let fatal = e.as_db_error().is_some_and(|d| d.severity() == "FATAL");
                if fatal || c.is_closed() {
                    client = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A cluster whose members and etcd have hosts of their own, and pgwolf
/// in front of it (patroni provider polling every 200 ms, pool size 10)
/// with a table `acks` made through it.
async fn cluster_behind_pgwolf(opts: pgwolf_tests::HaOptions) -> (pgwolf_tests::HaCluster, Pgwolf) {
    use pgwolf_tests::ha::{HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
    let ha = pgwolf_tests::HaCluster::start(pgwolf_tests::HaOptions {
        netns: true,
        ..opts
    });
    let urls: Vec<String> = ha.rest_urls().iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!(
        "pool_mode = \"transaction\"\nstats_users = [\"{HA_APP_USER}\"]\n\n\
         [clusters.ha]\nprovider = \"patroni\"\npatroni_urls = [{}]\n\
         poll_interval = \"200ms\"\nprobe_timeout = \"1s\"\nfailover_wait_timeout = \"30s\"\n\n\
         [databases.{HA_APP_DB}]\ncluster = \"ha\"\npool_size = 10\n",
        urls.join(", ")
    );
    let proxy = Pgwolf::start(&toml, &userlist(&[(HA_APP_USER, HA_APP_PASSWORD)]));
    let setup = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
    setup
        .batch_execute("CREATE TABLE acks (v bigint PRIMARY KEY)")
        .await
        .unwrap();
    (ha, proxy)
}

/// The running leader other than `old` that a member other than `old`
/// reports (`GET /cluster`; the cut member is not asked, as it would only
/// time out).
fn leader_per_others(ha: &pgwolf_tests::HaCluster, old: &str) -> Option<String> {
    ha.members().iter().filter(|m| m.name != old).find_map(|m| {
        let r = pgwolf_tests::ha::http::get_at(m.rest(), "/cluster", Duration::from_millis(500))
            .ok()?;
        let json = r.json()?;
        json["members"].as_array()?.iter().find_map(|x| {
            let leader = x["role"] == "leader" && x["state"] == "running" && x["name"] != old;
            leader.then(|| x["name"].as_str().unwrap_or_default().to_string())
        })
    })
}

/// Scenario a of issue 21: the primary's host is cut off completely (every
/// packet dropped, no reset), Patroni in synchronous mode, 20 writers
/// through pgwolf (pool size 10). Every client waiting on the lost primary
/// is answered soon after Patroni publishes the new leader, writes resume
/// on it, no acknowledged write is lost, no error is a bare disconnect,
/// and once the host is back it rejoins as a replica with nothing written
/// on it after the new leader was published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_s_host_cut_off() {
    use pgwolf_tests::ha::{HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
    use pgwolf_tests::HaOptions;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (ha, proxy) = cluster_behind_pgwolf(HaOptions {
        synchronous_mode: true,
        ..HaOptions::default()
    })
    .await;
    let (w, stop) = (
        Arc::new(Writes::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let writers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(writer(proxy.port(), w.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !w.acked.lock().unwrap().is_empty(),
        "no write before the cut"
    );

    let old = ha.leader().expect("a leader");
    let lab = ha.lab().expect("the cluster's hosts");
    let cut = Instant::now();
    lab.cut(&old, Cut::All);
    let new = within(60, "Patroni to publish a new leader", async {
        loop {
            if let Some(new) = leader_per_others(&ha, &old) {
                return new;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let published = Instant::now();
    // Writes on the new leader for a while, then stop.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        within(40, "a writer to stop", h).await.unwrap();
    }

    let acked = w.acked.lock().unwrap().clone();
    let errors = w.errors.lock().unwrap().clone();
    let slow = w.slow.lock().unwrap().clone();
    let first_after = acked
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > published)
        .min()
        .expect("a write after the new leader was published");
    // Requests that were waiting when the leader was published: when did
    // they get their answer?
    let longest_after_publication = slow
        .iter()
        .filter(|(started, answered)| *started < published && *answered > published)
        .map(|(_, answered)| *answered - published)
        .max()
        .unwrap_or_default();
    let longest_wait = w.longest_wait();
    let by_code = w.errors_by_code();
    eprintln!(
        "scenario a: cut {old}; Patroni published {new} {:?} after the cut; first write through pgwolf {:?} after publication; \
         waiting clients answered within {:?} of publication; longest wait {longest_wait:?}; {} writes acknowledged; errors by SQLSTATE {by_code:?}: {:?}",
        published - cut,
        first_after - published,
        longest_after_publication,
        acked.len(),
        errors.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
    assert!(
        errors.iter().all(|(_, m)| !m.starts_with("bare")),
        "a bare disconnect: {errors:?}"
    );
    assert!(
        errors.iter().all(|(_, m)| !m.contains("read-only")),
        "a write reached a replica: {errors:?}"
    );
    assert!(
        first_after - published < Duration::from_secs(2),
        "first write {:?} after publication",
        first_after - published
    );
    assert!(
        longest_after_publication < Duration::from_secs(3),
        "a client waited {longest_after_publication:?} after publication"
    );

    // Every acknowledged write is on the new leader.
    let now = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
    let rows = now.query("SELECT v FROM acks", &[]).await.unwrap();
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<i64> = acked
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !present.contains(v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );

    lab.heal(&old);
    tokio::task::block_in_place(|| ha.wait_ready(Duration::from_secs(120)));
}

/// Scenario b of issue 21: a replica's host is cut off while 10 readers
/// loop on the read-only alias and a writer on the primary. Reads in
/// flight on the lost replica are ended when Patroni drops it from the
/// cluster (its member key expires), not after TCP gives up; reads go on
/// on the other replica; writes never notice; no error is a bare
/// disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_s_host_cut_off() {
    use pgwolf_tests::HaOptions;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (ha, proxy) = cluster_behind_pgwolf(HaOptions::default()).await;
    let (reads, writes) = (Arc::new(Writes::default()), Arc::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(reader(proxy.port(), reads.clone(), stop.clone())))
        .collect();
    tasks.push(tokio::spawn(writer(
        proxy.port(),
        writes.clone(),
        stop.clone(),
    )));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !reads.acked.lock().unwrap().is_empty(),
        "no read before the cut"
    );

    let leader = ha.leader().expect("a leader");
    let replica = ha
        .members()
        .into_iter()
        .map(|m| m.name)
        .find(|n| *n != leader)
        .expect("a replica");
    let lab = ha.lab().expect("the cluster's hosts");
    let cut = Instant::now();
    lab.cut(&replica, Cut::All);
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        within(40, "a client to stop", t).await.unwrap();
    }

    let errors = reads.errors.lock().unwrap().clone();
    let longest = reads.longest_wait();
    let reads_after = reads.acked_between(cut, Instant::now());
    let by_code = reads.errors_by_code();
    let write_errors = writes.errors.lock().unwrap().clone();
    let longest_write = writes.longest_wait();
    eprintln!(
        "scenario b: cut replica {replica}; longest read wait {longest:?}; {reads_after} reads after the cut; \
         read errors by SQLSTATE {by_code:?}; write errors {write_errors:?}; longest write wait {longest_write:?}"
    );
    assert!(
        errors.iter().all(|(_, m)| !m.starts_with("bare")),
        "a bare disconnect: {errors:?}"
    );
    assert!(write_errors.is_empty(), "writes noticed: {write_errors:?}");
    assert!(reads_after > 100, "reads stopped: {reads_after}");
    assert!(
        longest < Duration::from_secs(15),
        "a read waited {longest:?} (tcp_user_timeout is 25 s)"
    );
    lab.heal(&replica);
    tokio::task::block_in_place(|| ha.wait_ready(Duration::from_secs(120)));
}

/// Scenario d of issue 21: pgwolf loses the Patroni REST API of every
/// member (the databases still answer it). The primary has not changed, so
/// nothing should: pgwolf keeps the topology it knows and writes go on
/// without an error; once the API answers again nothing has moved either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgwolf_cut_off_from_the_rest_api_alone() {
    use pgwolf_tests::HaOptions;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (ha, proxy) = cluster_behind_pgwolf(HaOptions::default()).await;
    let (w, stop) = (
        Arc::new(Writes::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let writers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(writer(proxy.port(), w.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lab = ha.lab().expect("the cluster's hosts");
    let me = lab.local_addr();
    let cut = Instant::now();
    for m in ha.members() {
        lab.cut_between(&m.name, me, Some(m.rest_port));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rest_errors = topology_errors(proxy.port()).await;
    assert!(
        !rest_errors.is_empty(),
        "pgwolf still reached the REST API: the cut did not take"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let healed = Instant::now();
    for m in ha.members() {
        lab.heal(&m.name);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        within(40, "a writer to stop", h).await.unwrap();
    }
    let errors = w.errors.lock().unwrap().clone();
    let during = w.acked_between(cut, healed);
    let longest = w.longest_wait();
    eprintln!(
        "scenario d: REST API cut off for 10 s ({rest_errors:?}): {during} writes acknowledged \
         meanwhile, longest wait {longest:?}, errors {errors:?}"
    );
    assert!(
        topology_errors(proxy.port()).await.is_empty(),
        "the REST API answers again"
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(during > 1_000, "writes stopped: {during}");
    assert!(
        longest < Duration::from_secs(2),
        "a write waited {longest:?}"
    );
}

/// SHOW TOPOLOGY's non-empty `error` cells: why the provider last failed.
async fn topology_errors(port: u16) -> Vec<String> {
    use pgwolf_tests::ha::{HA_APP_PASSWORD, HA_APP_USER};
    let console = connect(port, HA_APP_USER, HA_APP_PASSWORD, "pgwolf").await;
    console
        .simple_query("SHOW TOPOLOGY")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("error").map(str::to_string),
            _ => None,
        })
        .filter(|e| !e.is_empty())
        .collect()
}
