//! Following the leader of a real Patroni cluster (etcd, Patroni, three
//! PostgreSQL 15 members, see tests/src/ha.rs): unplanned failover with the
//! `patroni` and the `static` provider, a switchover through pgwolf's admin
//! console and back with `pgwolf switchover` that 20 writing clients do not
//! notice, the controller's rollout switchover (pooler paused) likewise, and
//! reads that leave a stopped replica.
//!
//! Harness calls block; they run on the test's own thread (the body of the
//! `#[tokio::test]`), where the children they spawn must be started, while
//! the clients run as tasks on the runtime's workers.

use pgwolf_tests::ha::{HaCluster, HaOptions, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use pgwolf_tests::tools::run_bounded;
use pgwolf_tests::{connect, pgwolf_bin, try_connect, userlist, within, Pgwolf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn provider_config(ha: &HaCluster, provider: &str) -> String {
    match provider {
        "patroni" => {
            let urls: Vec<String> = ha.rest_urls().iter().map(|u| format!("\"{u}\"")).collect();
            format!(
                "provider = \"patroni\"\npatroni_urls = [{}]\n",
                urls.join(", ")
            )
        }
        _ => {
            let hosts: Vec<String> = ha
                .pg_addrs()
                .iter()
                .map(|(h, p)| format!("\"{h}:{p}\""))
                .collect();
            format!(
                "provider = \"static\"\nhosts = [{}]\nprobe_user = \"{HA_APP_USER}\"\nprobe_dbname = \"{HA_APP_DB}\"\n",
                hosts.join(", ")
            )
        }
    }
}

fn start_pgwolf(ha: &HaCluster, provider: &str, pool_size: u32) -> Pgwolf {
    let toml = format!(
        r#"pool_mode = "transaction"
admin_users = ["{HA_APP_USER}"]

[clusters.ha]
{provider}
[databases.{HA_APP_DB}]
cluster = "ha"
pool_size = {pool_size}
"#,
        provider = provider_config(ha, provider)
    );
    Pgwolf::start(&toml, &userlist(&[(HA_APP_USER, HA_APP_PASSWORD)]))
}

/// What the writers saw: acknowledged values and every error message.
#[derive(Default)]
struct Log {
    acked: Mutex<Vec<i64>>,
    errors: Mutex<Vec<(Instant, String)>>,
    last_ok: Mutex<Option<Instant>>,
    next: AtomicU64,
}

fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// A client writing until `stop`: autocommit INSERTs, or BEGIN/INSERT/
/// COMMIT transactions with `in_tx`. It reconnects after an error that
/// closed its connection.
async fn writer(port: u16, log: Arc<Log>, stop: Arc<AtomicBool>, in_tx: bool) {
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match try_connect(port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    log.errors
                        .lock()
                        .unwrap()
                        .push((Instant::now(), message(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().unwrap();
        let v = log.next.fetch_add(1, Ordering::Relaxed) as i64;
        let sql = if in_tx {
            format!("BEGIN; INSERT INTO acks VALUES ({v}); COMMIT")
        } else {
            format!("INSERT INTO acks VALUES ({v})")
        };
        match c.batch_execute(&sql).await {
            Ok(()) => {
                log.acked.lock().unwrap().push(v);
                *log.last_ok.lock().unwrap() = Some(Instant::now());
            }
            Err(e) => {
                log.errors
                    .lock()
                    .unwrap()
                    .push((Instant::now(), message(&e)));
                // A FATAL ends the connection even before the driver has
                // seen the close: another request on it only fails again
                // ("connection closed"), which is no answer of pgwolf's.
                let fatal = e.as_db_error().is_some_and(|d| d.severity() == "FATAL");
                if fatal || c.is_closed() {
                    client = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn create_acks(port: u16) {
    let c = within(60, "first connection through pgwolf", async {
        connect(port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await
    })
    .await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS acks (v bigint PRIMARY KEY)")
        .await
        .unwrap();
}

/// Every acknowledged write is on the primary pgwolf now uses.
async fn assert_all_present(port: u16, log: &Log) {
    let c = connect(port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
    let acked = log.acked.lock().unwrap().clone();
    let rows = c.query("SELECT v FROM acks", &[]).await.unwrap();
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let missing: Vec<_> = acked.iter().filter(|v| !present.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
}

fn wait_for_write_after(log: &Log, t: Instant, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(ok) = *log.last_ok.lock().unwrap() {
            if ok > t {
                return Some(ok);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// SIGKILL of the leader's Patroni and postmaster while a client writes:
/// writes resume on the new leader soon after Patroni publishes it, none
/// fails as read-only, and every acknowledged one survives. The cluster runs
/// in Patroni's synchronous mode: with asynchronous replication a commit the
/// killed leader acknowledged can be lost by PostgreSQL itself (a clean-clone
/// CI run lost one that way), and that says nothing about pgwolf.
async fn unplanned_failover(provider: &str) {
    let ha = HaCluster::start(HaOptions {
        synchronous_mode: true,
        ..HaOptions::default()
    });
    let proxy = start_pgwolf(&ha, provider, 4);
    create_acks(proxy.port()).await;
    let (log, stop) = (Arc::new(Log::default()), Arc::new(AtomicBool::new(false)));
    let w = tokio::spawn(writer(proxy.port(), log.clone(), stop.clone(), false));
    assert!(wait_for_write_after(&log, Instant::now(), Duration::from_secs(20)).is_some());

    let killed_at = Instant::now();
    let old = ha.kill_leader_node();
    let new = ha.wait_for_new_leader(&old, Duration::from_secs(60));
    let published = Instant::now();
    let resumed = wait_for_write_after(&log, published, Duration::from_secs(30))
        .expect("writes resume after the new leader is published");
    // Give the writer a little longer on the new primary.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    within(30, "writer to stop", w).await.unwrap();

    let errors = log.errors.lock().unwrap().clone();
    eprintln!(
        "[{provider}] killed {old} → new leader {new} published after {:?}; first write through pgwolf {:?} after publication; {} errors: {:?}",
        published - killed_at,
        resumed.saturating_duration_since(published),
        errors.len(),
        errors.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
    for (_, m) in &errors {
        assert!(!m.contains("read-only"), "a write reached a replica: {m}");
    }
    assert!(
        resumed.saturating_duration_since(published) < Duration::from_secs(5),
        "writes resumed {:?} after the new leader was published",
        resumed - published
    );
    assert_all_present(proxy.port(), &log).await;
    drop(proxy);
    ha.restart_member(&old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_provider_follows_an_unplanned_failover() {
    unplanned_failover("patroni").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_provider_follows_an_unplanned_failover() {
    unplanned_failover("static").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_through_pgwolf_costs_twenty_clients_no_error() {
    let ha = HaCluster::start(HaOptions::default());
    let proxy = start_pgwolf(&ha, "patroni", 10);
    create_acks(proxy.port()).await;
    let (log, stop) = (Arc::new(Log::default()), Arc::new(AtomicBool::new(false)));
    let writers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(writer(proxy.port(), log.clone(), stop.clone(), true)))
        .collect();
    assert!(wait_for_write_after(&log, Instant::now(), Duration::from_secs(20)).is_some());
    std::thread::sleep(Duration::from_millis(500));

    let old = ha.leader().expect("a leader");
    let admin = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, "pgwolf").await;
    let started = Instant::now();
    let new = within(
        90,
        "SWITCHOVER",
        pgwolf_tests::clients::simple_value(&admin, "SWITCHOVER ha"),
    )
    .await
    .expect("SWITCHOVER through the admin console")
    .expect("the new primary's name");
    let took = started.elapsed();
    assert_ne!(new, old);
    assert!(wait_for_write_after(&log, Instant::now(), Duration::from_secs(20)).is_some());
    ha.wait_ready(Duration::from_secs(60));

    // And back to the old leader with the CLI, the writers still running.
    let started = Instant::now();
    let out = run_bounded(
        std::process::Command::new(pgwolf_bin())
            .args(["switchover", "--cluster", "ha", "--to", &old, "--admin"])
            .arg(format!("127.0.0.1:{}", proxy.port()))
            .args(["--user", HA_APP_USER])
            .env("PGPASSWORD", HA_APP_PASSWORD),
        Duration::from_secs(90),
    );
    let cli_took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgwolf switchover: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("now {old}")), "{stdout}");
    assert!(wait_for_write_after(&log, Instant::now(), Duration::from_secs(20)).is_some());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        within(30, "writers to stop", w).await.unwrap();
    }
    let errors = log.errors.lock().unwrap().clone();
    let acked = log.acked.lock().unwrap().len();
    eprintln!(
        "switchover {old} → {new} took {took:?} through the admin console, back with the CLI {cli_took:?}; {acked} transactions acknowledged by 20 clients, {} errors",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "clients saw errors during a planned switchover: {:?}",
        errors.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
    assert_eq!(ha.leader().as_deref(), Some(old.as_str()));
    assert_all_present(proxy.port(), &log).await;
}

/// The controller's rollout against real Patroni and pgwolf, with 20
/// clients writing (controller/src/rollout): Patroni's view from its REST
/// API, the dynamic configuration patched and reloaded, and the step for
/// the primary: the pooler paused through its admin console,
/// `POST /switchover`, RESUME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_s_switchover_with_the_pooler_paused_costs_writers_no_error() {
    use pgwolf::topology::Role;
    use pgwolf_controller::rollout::{self, patroni, pooler};

    // The instances as the controller renders them (patroni.yml, its
    // passwords and certificates: tests/tests/instance.rs runs them on
    // hosts of their own), here on loopback.
    let (cluster, credentials) = pgwolf_tests::ha::rendered::test_cluster(serde_json::json!({}));
    let rendered = pgwolf_tests::ha::rendered::Rendered::new(&cluster, &credentials);
    let ha = HaCluster::start(HaOptions {
        rendered: Some(Arc::new(rendered)),
        ..HaOptions::default()
    });
    let proxy = start_pgwolf(&ha, "patroni", 10);
    create_acks(proxy.port()).await;
    let (log, stop) = (Arc::new(Log::default()), Arc::new(AtomicBool::new(false)));
    let writers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(writer(proxy.port(), log.clone(), stop.clone(), true)))
        .collect();
    assert!(wait_for_write_after(&log, Instant::now(), Duration::from_secs(20)).is_some());

    let settings = rollout::Settings::default();
    let members = patroni::cluster(&ha.rest_urls(), settings.request_timeout)
        .await
        .expect("GET /cluster");
    assert_eq!(members.len(), 3, "{members:?}");
    let old = members
        .iter()
        .find(|m| m.role == Role::Primary)
        .expect("a running leader")
        .name
        .clone();
    let candidate = members
        .iter()
        .filter(|m| m.role == Role::Replica)
        .min_by_key(|m| m.lag)
        .expect("a streaming replica")
        .name
        .clone();
    let (url, rest_port) = ha
        .members()
        .iter()
        .zip(ha.rest_urls())
        .find(|(m, _)| m.name == old)
        .map(|(m, u)| (u, m.rest_port))
        .unwrap();
    let console = pooler::Console {
        host: "127.0.0.1".into(),
        port: proxy.port(),
        user: HA_APP_USER.into(),
        password: HA_APP_PASSWORD.into(),
    };

    // Dynamic configuration: one PATCH of what differs, then nothing; the
    // members reload it (work_mem needs no restart).
    let mut spec = cluster.spec.clone();
    spec.postgresql
        .parameters
        .insert("work_mem".into(), "7MB".into());
    let patched = rollout::config::sync(&url, &spec, settings.request_timeout)
        .await
        .expect("PATCH /config");
    assert_eq!(
        patched,
        Some(serde_json::json!({ "postgresql": { "parameters": { "work_mem": "7MB" } } }))
    );
    // Patroni answers GET /config from its cached view of the DCS, which
    // may lag its own PATCH by a moment (its etcd3 KVCache): convergence
    // is judged once the member reports what was patched.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let config = pgwolf_tests::ha::http::get(rest_port, "/config", Duration::from_secs(5))
            .ok()
            .and_then(|r| r.json());
        if config.is_some_and(|c| c["postgresql"]["parameters"]["work_mem"] == "7MB") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GET /config never showed the patch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = rollout::config::sync(&url, &spec, settings.request_timeout)
        .await
        .unwrap();
    assert_eq!(again, None, "converged");
    let reader = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = reader.query_one("SHOW work_mem", &[]).await.unwrap();
        if row.get::<_, String>(0) == "7MB" {
            break;
        }
        assert!(Instant::now() < deadline, "work_mem never reloaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A refusal is Patroni's own words, and changes nothing.
    let wrong = patroni::switchover(&url, &candidate, &old, settings.request_timeout)
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("answered 4"), "{wrong}");
    assert_eq!(ha.leader().as_deref(), Some(old.as_str()));

    let started = Instant::now();
    within(
        120,
        "the controller's switchover",
        rollout::switch_paused(&[console], &url, &old, &candidate, &settings),
    )
    .await
    .expect("switchover with the pooler paused");
    let took = started.elapsed();
    assert_eq!(ha.leader().as_deref(), Some(candidate.as_str()));
    assert!(wait_for_write_after(&log, Instant::now(), Duration::from_secs(20)).is_some());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        within(30, "writers to stop", w).await.unwrap();
    }
    let errors = log.errors.lock().unwrap().clone();
    eprintln!(
        "controller switchover {old} → {candidate} took {took:?}; {} transactions acknowledged by 20 clients, {} errors",
        log.acked.lock().unwrap().len(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "clients saw errors during the controller's switchover: {:?}",
        errors.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
    assert_all_present(proxy.port(), &log).await;
}

/// (in recovery, server port) as a read-only client sees it.
async fn at(c: &tokio_postgres::Client) -> Result<(bool, u16), tokio_postgres::Error> {
    let r = c
        .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
        .await?;
    Ok((r.get::<_, bool>(0), r.get::<_, i32>(1) as u16))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_leave_a_stopped_one() {
    let ha = HaCluster::start(HaOptions::default());
    let proxy = start_pgwolf(&ha, "patroni", 4);
    let ro_db = format!("{HA_APP_DB}_ro");
    let mut ro = within(60, "read-only alias", async {
        connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, &ro_db).await
    })
    .await;
    let leader = ha.leader().unwrap();
    let leader_port = ha
        .members()
        .into_iter()
        .find(|m| m.name == leader)
        .unwrap()
        .pg_port;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (in_recovery, port) = at(&ro).await.unwrap();
        assert!(in_recovery, "a read on the primary (port {port})");
        assert_ne!(port, leader_port);
        seen.insert(port);
    }
    eprintln!("reads landed on replica ports {seen:?}");
    let victim_port = *seen.iter().next().unwrap();
    let victim = ha
        .members()
        .into_iter()
        .find(|m| m.pg_port == victim_port)
        .unwrap()
        .name;
    let stopped_at = Instant::now();
    ha.stop_member(&victim);
    // Reads may fail while the stop is noticed; then they move.
    // A read running on the replica as it stops loses its connection (the
    // client is told and reconnects); the next ones move.
    let mut errors = Vec::new();
    let moved = within(30, "reads to leave the stopped replica", async {
        loop {
            match at(&ro).await {
                Ok((true, port)) if port != victim_port => return stopped_at.elapsed(),
                Ok((in_recovery, port)) => {
                    assert!(in_recovery, "a read on the primary (port {port})");
                }
                Err(e) => {
                    errors.push(message(&e));
                    if ro.is_closed() {
                        ro = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, &ro_db).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    eprintln!("errors while the replica stopped: {errors:?}");
    eprintln!("reads left the stopped replica {victim} after {moved:?}");
    for _ in 0..10 {
        let (in_recovery, port) = at(&ro).await.unwrap();
        assert!(in_recovery && port != victim_port, "read on {port}");
    }
    drop(proxy);
    ha.restart_member(&victim);
}
