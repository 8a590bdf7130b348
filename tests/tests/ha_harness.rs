//! Smoke test of the local HA cluster harness (etcd + Patroni + PostgreSQL):
//! the events failover tests are built from, each followed by the readiness
//! wait those tests rely on. Timings are printed for comparison with the
//! expected ones (fast profile: switchover ~2 s, node loss ~6 s).

use pgwolf_tests::clients::psql_ok;
use pgwolf_tests::ha::{HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use pgwolf_tests::{psql, HaCluster, HaOptions};
use std::time::{Duration, Instant};

const READY_LIMIT: Duration = Duration::from_secs(60);

fn leaders(cluster: &HaCluster) -> Vec<String> {
    let view = cluster.cluster_view().expect("GET /cluster answers");
    view.into_iter()
        .filter(|m| m.role == "leader")
        .map(|m| m.name)
        .collect()
}

fn pg_port(cluster: &HaCluster, name: &str) -> u16 {
    cluster
        .members()
        .into_iter()
        .find(|m| m.name == name)
        .expect("member")
        .pg_port
}

#[test]
fn three_members_survive_switchover_and_leader_node_loss() {
    let total = Instant::now();
    let t = Instant::now();
    let cluster = HaCluster::start(HaOptions::default());
    eprintln!("[ha] cluster of 3 ready in {:.1?}", t.elapsed());
    assert_eq!(cluster.members().len(), 3);
    assert_eq!(cluster.rest_urls().len(), 3);
    let first = cluster.leader().expect("a leader");
    assert_eq!(leaders(&cluster), [first.as_str()], "exactly one leader");

    let t = Instant::now();
    let second = cluster.switchover(None);
    let switched = t.elapsed();
    assert_ne!(second, first);
    assert_eq!(cluster.wait_ready(READY_LIMIT), second);
    eprintln!(
        "[ha] switchover {first} -> {second}: published in {switched:.1?}, all ready in {:.1?}",
        t.elapsed()
    );
    // The table made at bootstrap on the first leader reached the new one.
    let rows = psql(
        pg_port(&cluster, &second),
        HA_APP_USER,
        HA_APP_PASSWORD,
        HA_APP_DB,
        "SELECT count(*) > 0 FROM probe",
    );
    assert_eq!(psql_ok(&rows), "t");

    let t = Instant::now();
    let killed = cluster.kill_leader_node();
    assert_eq!(killed, second);
    assert!(cluster.postmaster_pid(&killed).is_none());
    let third = cluster.wait_for_new_leader(&killed, Duration::from_secs(30));
    let elected = t.elapsed();
    assert_ne!(third, killed);
    while let Err(e) = cluster.probe_write(&third) {
        assert!(t.elapsed() < READY_LIMIT, "{third} never took a write: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let writable = t.elapsed();
    cluster.wait_ready(READY_LIMIT);
    eprintln!(
        "[ha] leader node {killed} killed: {third} published in {elected:.1?}, \
         writable in {writable:.1?}, all ready in {:.1?}",
        t.elapsed()
    );

    let t = Instant::now();
    cluster.restart_member(&killed);
    assert_eq!(cluster.wait_ready(READY_LIMIT), third);
    eprintln!("[ha] {killed} rejoined in {:.1?}", t.elapsed());

    // A replica stopped cleanly is left out of readiness, then rejoins.
    let replica = cluster
        .members()
        .into_iter()
        .map(|m| m.name)
        .find(|n| *n != third)
        .expect("a replica");
    let t = Instant::now();
    cluster.stop_member(&replica);
    assert!(cluster.postmaster_pid(&replica).is_none());
    assert_eq!(cluster.wait_ready(READY_LIMIT), third);
    cluster.restart_member(&replica);
    cluster.wait_ready(READY_LIMIT);
    eprintln!(
        "[ha] replica {replica} stopped and rejoined in {:.1?}",
        t.elapsed()
    );

    let t = Instant::now();
    drop(cluster);
    eprintln!(
        "[ha] cluster stopped in {:.1?}; whole test {:.1?}",
        t.elapsed(),
        total.elapsed()
    );
}
