//! A server whose node is lost: the database runs on a host of its own (a
//! network namespace) and is cut off by dropping every packet, so nothing
//! answers and no reset arrives, as when a Kubernetes node goes away.
//! Without keepalives and `tcp_user_timeout` a client of it would wait for
//! TCP's retransmissions (about 15 minutes) or forever when idle.

use pgwolf_tests::clients::{config_at, sqlstate, try_connect_with};
use pgwolf_tests::failover::{
    cluster_behind, cut_from_peers, lose_the_primary, ride_out, Front, Load, Outage, Pooler,
};
use pgwolf_tests::netns::{Cut, Lab};
use pgwolf_tests::{
    connect, userlist, within, PgOptions, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER,
};
use pgwolf_tests::{HaCluster, HaOptions};
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

fn synchronous() -> HaOptions {
    HaOptions {
        synchronous_mode: true,
        ..Default::default()
    }
}

/// Scenarios a, e and g of issue 21 through pgwolf: [`lose_the_primary`]
/// with Patroni in synchronous mode, then what pgwolf must hold to: every
/// client waiting on the lost primary is answered soon after Patroni
/// publishes the new leader, writes resume on it, reads go on, the long
/// transaction ends with an error and is not committed, no acknowledged
/// write is lost, no write sent after the publication lands on the old
/// primary (read inside its host before the heal), it serves no read
/// after the publication, and no error is a bare disconnect. Returns
/// the old leader's name, the cluster, pgwolf and what `fault` returned,
/// for the caller to heal and check the rejoin.
async fn pgwolf_loses_the_primary<F>(
    scenario: &str,
    pooler: Pooler,
    fault: impl FnOnce(&HaCluster, &str) -> F,
) -> (String, HaCluster, Front, F) {
    let (f, ha, front, undo) =
        lose_the_primary(pooler, synchronous(), Duration::from_secs(5), fault).await;
    eprintln!("scenario {scenario}: {f:#?}");
    for (what, errors) in [("write", &f.write_errors), ("read", &f.read_errors)] {
        assert!(
            !errors.contains_key("bare"),
            "a bare disconnect of a {what}: {errors:?}"
        );
    }
    assert!(
        f.write_messages.iter().all(|m| !m.contains("read-only")),
        "a write reached a replica: {:?}",
        f.write_messages
    );
    let first = f.first_write.expect("a write after the publication");
    assert!(
        first < Duration::from_secs(1),
        "first write {first:?} after publication"
    );
    let answered = f.waiting_answered.expect("every waiting writer answered");
    assert!(
        answered < Duration::from_secs(2),
        "a writer waited {answered:?} after publication"
    );
    assert!(f.reads_after > 100, "reads stopped: {}", f.reads_after);
    assert!(
        f.long_answer != "bare" && f.long_answer != "none" && f.long_answer != "ok",
        "the long transaction: {}",
        f.long_answer
    );
    let long_after = f.long_after.unwrap();
    assert!(
        long_after < 2.0,
        "the long transaction was answered {long_after} s after publication"
    );
    assert!(
        f.lost.is_empty(),
        "{} acknowledged writes lost (value, acknowledged after the publication): {:?}",
        f.lost.len(),
        f.lost
    );
    assert!(!f.long_committed, "the long transaction was committed");
    if let Some((_, after)) = f.old_divergent {
        assert_eq!(
            after, 0,
            "writes sent after the publication landed on the old primary"
        );
    }
    assert_eq!(
        f.reads_from_old_after, 0,
        "reads served by the lost primary after the publication"
    );
    (f.old, ha, front, undo)
}

/// Scenario a of issue 21: the primary's host is cut off completely
/// (every packet dropped, no reset). Once the host is back, the old
/// leader rejoins as a replica (scenario f) and serves reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_s_host_cut_off() {
    let (old, ha, front, ()) = pgwolf_loses_the_primary("a", Pooler::Pgwolf, |ha, old| {
        ha.lab().expect("the cluster's hosts").cut(old, Cut::All)
    })
    .await;
    ha.lab().unwrap().heal(&old);
    rejoins_as_a_replica(&ha, &front, &old).await;
}

/// Scenario a with the `static` provider: pgwolf learns the roles only
/// from `pg_is_in_recovery()` on each member, no Patroni API, so the new
/// primary is seen once it has been promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_s_host_cut_off_static_provider() {
    let (old, ha, front, ()) =
        pgwolf_loses_the_primary("a, static", Pooler::PgwolfStatic, |ha, old| {
            ha.lab().expect("the cluster's hosts").cut(old, Cut::All)
        })
        .await;
    ha.lab().unwrap().heal(&old);
    rejoins_as_a_replica(&ha, &front, &old).await;
}

/// Scenario g of issue 21: the primary's PostgreSQL hangs (the postmaster
/// and every backend stopped, as a stuck disk or a frozen VM leaves it),
/// without any network fault, so its kernel still acknowledges every
/// packet and keepalives see nothing. Patroni's HA loop on it hangs on its
/// own queries, its leader key expires and another member takes over.
///
/// The hung member is then restarted (Patroni and PostgreSQL killed, as a
/// liveness probe would), not continued: Patroni 3.0.2 (Debian 12's)
/// resuming a loop that hung while it held the lock writes the leader key
/// back over the new leader's (fixed in Patroni 3.0.3, patroni#2689), and
/// the new leader, demoted, rewinds away writes it had acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_s_postgresql_hangs() {
    let (old, ha, front, hung) = pgwolf_loses_the_primary("g", Pooler::Pgwolf, |ha, old| {
        let pid = ha.postmaster_pid(old).expect("the leader's postmaster");
        pgwolf_tests::stopped::Stopped::postmaster(pid)
    })
    .await;
    assert!(hung.count() > 3, "only {} processes stopped", hung.count());
    ha.kill_member(&old);
    hung.kill();
    ha.restart_member(&old);
    rejoins_as_a_replica(&ha, &front, &old).await;
}

/// Scenario e of issue 21: the old primary is cut off from the other
/// members and etcd, but pgwolf and the clients still reach it (its
/// PostgreSQL and its REST API). Patroni demotes it when it cannot renew
/// its lock; pgwolf must not send it a write after the new leader is
/// published, whatever its own REST API still says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primary_reachable_only_by_pgwolf() {
    the_old_primary_reachable_only_by(Pooler::Pgwolf).await;
}

/// Scenario e with the `static` provider: the demoted old primary still
/// answers pgwolf's probe as a standby, but streams from no one, so it
/// must get no reads (its data stops at the cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primary_reachable_only_by_pgwolf_static_provider() {
    the_old_primary_reachable_only_by(Pooler::PgwolfStatic).await;
}

async fn the_old_primary_reachable_only_by(pooler: Pooler) {
    let (old, ha, front, ()) = pgwolf_loses_the_primary("e", pooler, cut_from_peers).await;
    ha.lab().unwrap().heal(&old);
    rejoins_as_a_replica(&ha, &front, &old).await;
}

/// Scenario f of issue 21: once its fault is healed, the old leader
/// rejoins as a replica (pg_rewind if it had diverged), and pgwolf lists
/// it among the replicas again, for reads.
async fn rejoins_as_a_replica(ha: &HaCluster, front: &Front, old: &str) {
    let healed = Instant::now();
    tokio::task::block_in_place(|| ha.wait_ready(Duration::from_secs(120)));
    let rejoined = healed.elapsed();
    let view = ha.cluster_view().expect("the cluster's view");
    let member = view.iter().find(|m| m.name == old).expect("the old leader");
    assert_ne!(member.role, "leader", "{view:?}");
    // The patroni provider names members as Patroni does, the static one
    // by host:port.
    let info = ha.members().into_iter().find(|m| m.name == old).unwrap();
    let by_address = format!("{}:{}", info.host, info.pg_port);
    within(
        30,
        "pgwolf to list the rejoined member as a replica",
        async {
            while topology_role(front.port(), old).await.as_deref() != Some("replica")
                && topology_role(front.port(), &by_address).await.as_deref() != Some("replica")
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    eprintln!(
        "rejoin: {old} a replica {rejoined:?} after the heal, a replica to pgwolf {:?} after the heal",
        healed.elapsed()
    );
}

/// Scenario c of issue 21: etcd is cut off from every member for 15 s
/// (pgwolf never talks to it), then 10 s more to see a leader race after
/// the heal and writes on its winner. No error may be a bare disconnect.
async fn etcd_cut_off(failsafe_mode: bool) -> Outage {
    let (o, ha, front) = ride_out(
        Pooler::Pgwolf,
        HaOptions {
            failsafe_mode,
            ..Default::default()
        },
        Duration::from_secs(15),
        Duration::from_secs(10),
        |ha| ha.lab().expect("the cluster's hosts").cut("etcd", Cut::All),
        |ha, ()| ha.lab().unwrap().heal("etcd"),
    )
    .await;
    eprintln!(
        "scenario c, failsafe_mode {failsafe_mode}: {o:#?}\npgwolf's topology changes:\n{}",
        front.topology_log().join("\n")
    );
    for (what, errors) in [("write", &o.write_errors), ("read", &o.read_errors)] {
        assert!(
            !errors.contains_key("bare"),
            "a bare disconnect of a {what}: {errors:?}"
        );
    }
    assert_eq!(o.unanswered, 0, "requests left unanswered");
    tokio::task::block_in_place(|| ha.wait_ready(Duration::from_secs(120)));
    o
}

/// Scenario c with Patroni's failsafe mode (the harness's default): the
/// leader keeps its role while it reaches every other member, so nothing
/// changes for clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cut_off_with_failsafe_mode() {
    let o = etcd_cut_off(true).await;
    assert!(o.write_errors.is_empty(), "{:?}", o.write_messages);
    assert!(o.read_errors.is_empty(), "{:?}", o.read_messages);
    assert!(o.writes_during > 1_000, "writes stopped: {o:?}");
    assert!(
        o.longest_write_wait < Duration::from_secs(2),
        "a write waited {:?}",
        o.longest_write_wait
    );
}

/// Scenario c without failsafe mode: Patroni demotes the leader once it
/// cannot renew its lock, so there is no primary until etcd is back.
/// Writes wait (bounded by `failover_wait_timeout`) or fail with an
/// ErrorResponse, never reach a demoted member, and resume once a leader
/// is elected again; reads go on throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cut_off_without_failsafe_mode() {
    let o = etcd_cut_off(false).await;
    assert!(
        o.write_messages.iter().all(|m| !m.contains("read-only")),
        "a write reached a demoted member: {:?}",
        o.write_messages
    );
    assert!(o.first_write_after_heal.is_some(), "writes never resumed");
    assert!(o.reads_during > 1_000, "reads stopped: {o:?}");
    assert!(
        o.longest_write_wait < Duration::from_secs(35),
        "a write waited {:?} (failover_wait_timeout is 30 s)",
        o.longest_write_wait
    );
}

/// Scenario b of issue 21: a replica's host is cut off while 10 readers
/// loop on the read-only alias and a writer on the primary. Reads in
/// flight on the lost replica are ended when Patroni drops it from the
/// cluster (its member key expires), not after TCP gives up; reads go on
/// on the other replica; writes never notice; no error is a bare
/// disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_s_host_cut_off() {
    let (ha, front) = cluster_behind(Pooler::Pgwolf, HaOptions::default()).await;
    let load = Load::start(front.port(), false).await;
    let (reads, writes) = (load.reads.clone(), load.writes.clone());

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
    load.stop().await;

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
    let (ha, front) = cluster_behind(Pooler::Pgwolf, HaOptions::default()).await;
    let load = Load::start(front.port(), false).await;
    let w = load.writes.clone();
    let lab = ha.lab().expect("the cluster's hosts");
    let me = lab.local_addr();
    let cut = Instant::now();
    for m in ha.members() {
        lab.cut_between(&m.name, &[me], Some(m.rest_port));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rest_errors = topology_errors(front.port()).await;
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
    load.stop().await;
    let errors = w.errors.lock().unwrap().clone();
    let during = w.acked_between(cut, healed);
    let longest = w.longest_wait();
    eprintln!(
        "scenario d: REST API cut off for 10 s ({rest_errors:?}): {during} writes acknowledged \
         meanwhile, longest wait {longest:?}, errors {errors:?}"
    );
    assert!(
        topology_errors(front.port()).await.is_empty(),
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
    topology_column(port, "error")
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty())
        .collect()
}

/// The role SHOW TOPOLOGY gives `member`.
async fn topology_role(port: u16, member: &str) -> Option<String> {
    topology_column(port, "role")
        .await
        .into_iter()
        .find_map(|(m, role)| (m == member).then_some(role))
}

/// (member, `column`) of each SHOW TOPOLOGY row.
async fn topology_column(port: u16, column: &str) -> Vec<(String, String)> {
    use pgwolf_tests::ha::{HA_APP_PASSWORD, HA_APP_USER};
    let console = connect(port, HA_APP_USER, HA_APP_PASSWORD, "pgwolf").await;
    console
        .simple_query("SHOW TOPOLOGY")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get("member")?.to_string(), r.get(column)?.to_string()))
            }
            _ => None,
        })
        .collect()
}
