//! Scenarios that take the primary away: the fault, Patroni's new leader,
//! and what it cost the clients.

use super::{cluster_behind, described, Front, Load, Pooler, LONG_TX_VALUE};
use crate::clients::{config_at, try_connect_with};
use crate::ha::{HaCluster, HaOptions, MemberInfo, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use crate::within;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The running leader other than `old` that a member other than `old`
/// reports (`GET /cluster`; the lost member is not asked, as it would
/// only time out or tell its stale view).
pub fn leader_per_others(ha: &HaCluster, old: &str) -> Option<String> {
    ha.members().iter().filter(|m| m.name != old).find_map(|m| {
        let r = crate::ha::http::get_at(m.rest(), "/cluster", Duration::from_millis(500)).ok()?;
        let json = r.json()?;
        json["members"].as_array()?.iter().find_map(|x| {
            let leader = x["role"] == "leader" && x["state"] == "running" && x["name"] != old;
            leader.then(|| x["name"].as_str().unwrap_or_default().to_string())
        })
    })
}

/// Scenario e's fault: member `name` cut off from the other members and
/// etcd (both ways), still reached by the pooler and the clients.
pub fn cut_from_peers(ha: &HaCluster, name: &str) {
    let lab = ha.lab().expect("the cluster's hosts");
    let mut peers: Vec<std::net::Ipv4Addr> = ha
        .members()
        .iter()
        .filter(|m| m.name != name)
        .map(|m| m.host.parse().unwrap())
        .collect();
    peers.push(lab.host("etcd").addr);
    lab.cut_between(name, &peers, None);
}

/// What losing the primary cost the clients.
#[derive(Debug)]
pub struct PrimaryLoss {
    pub old: String,
    pub new: String,
    /// The fault to Patroni publishing the new leader.
    pub fault_to_publication: Duration,
    /// Publication to the first write acknowledged through the pooler;
    /// None: none within the run.
    pub first_write: Option<Duration>,
    /// Publication to the answer of the last request that was waiting
    /// then; None: one was never answered within the run.
    pub waiting_answered: Option<Duration>,
    pub longest_write_wait: Duration,
    pub writes_acked: usize,
    pub write_errors: BTreeMap<String, usize>,
    pub write_messages: BTreeSet<String>,
    pub unanswered_writes: usize,
    /// Acknowledged writes missing from the new leader: (value, whether
    /// acknowledged after the publication).
    pub lost: Vec<(i64, bool)>,
    /// Rows on the old primary, read inside its host before the fault is
    /// undone, that the new leader lacks (Patroni rewinds them away when
    /// it rejoins): (all of them, those first sent after the
    /// publication). None: it could not be read (hung).
    pub old_divergent: Option<(usize, usize)>,
    pub reads_after: usize,
    /// Reads the old primary answered after the publication: a member
    /// the cluster has lost serves only stale data.
    pub reads_from_old_after: usize,
    pub longest_read_wait: Duration,
    pub read_errors: BTreeMap<String, usize>,
    /// The long transaction: its answer (SQLSTATE, "bare", or "none" when
    /// unanswered) and when relative to the publication (negative: before).
    pub long_answer: String,
    pub long_after: Option<f64>,
    /// Whether the long transaction's INSERT is on the new leader.
    pub long_committed: bool,
}

/// Runs [`Load`] through `pooler` in front of a cluster started with
/// `opts` (the scenarios use synchronous mode, where no acknowledged
/// write may be lost), lets `fault` take the primary away (it gets the leader's name and
/// returns what undoes it), waits for Patroni to publish a new leader, and
/// observes `observe` longer. Returns the figures, the cluster, the
/// pooler and what `fault` returned, for the caller to heal.
pub async fn lose_the_primary<F>(
    pooler: Pooler,
    opts: HaOptions,
    observe: Duration,
    fault: impl FnOnce(&HaCluster, &str) -> F,
) -> (PrimaryLoss, HaCluster, Front, F) {
    let (ha, front) = cluster_behind(pooler, opts).await;
    let load = Load::start(front.port(), true).await;
    let old = ha.leader().expect("a leader");
    let at_fault = Instant::now();
    let undo = fault(&ha, &old);
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
    let first_sent_after = load.writes.next.load(Ordering::Relaxed);
    tokio::time::sleep(observe).await;
    let (w, r) = (load.writes.clone(), load.reads.clone());
    let long = load.stop().await;
    let end = Instant::now();

    let acked = w.acked.lock().unwrap().clone();
    let slow = w.slow.lock().unwrap().clone();
    let unanswered = w.unanswered.lock().unwrap().clone();
    let first_write = acked
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > published)
        .min()
        .map(|at| at - published);
    let waiting_answered = if unanswered.iter().any(|s| *s < published) {
        None
    } else {
        Some(
            slow.iter()
                .filter(|(started, answered)| *started < published && *answered > published)
                .map(|(_, answered)| *answered - published)
                .max()
                .unwrap_or_default(),
        )
    };
    let (long_answer, long_after) = match &long {
        Some((at, Ok(()))) => ("ok".to_string(), Some(signed(*at, published))),
        Some((at, Err(e))) => (
            described(e)
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
            Some(signed(*at, published)),
        ),
        None => ("none".to_string(), None),
    };

    let mut lost = Vec::new();
    let mut long_committed = false;
    // Read from the new leader itself, not through the pooler: a pooler
    // still stuck on the lost member (PgBouncer until tcp_user_timeout)
    // must not stop the count of what landed.
    let leader = ha
        .members()
        .into_iter()
        .find(|m| m.name == new)
        .expect("the new leader is a member");
    let direct = config_at(
        &leader.host,
        leader.pg_port,
        HA_APP_USER,
        HA_APP_PASSWORD,
        HA_APP_DB,
    );
    let present = within(60, "the new leader's rows", async {
        loop {
            if let Ok(c) = try_connect_with(&direct).await {
                if let Ok(rows) = c.query("SELECT v FROM acks", &[]).await {
                    return rows.iter().map(|r| r.get(0)).collect::<HashSet<i64>>();
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    for (v, at) in &acked {
        if !present.contains(v) {
            lost.push((*v, *at > published));
        }
    }
    long_committed |= present.contains(&LONG_TX_VALUE);
    let old_info = ha
        .members()
        .into_iter()
        .find(|m| m.name == old)
        .expect("the old leader is a member");
    let old_divergent = tokio::task::block_in_place(|| rows_inside(&ha, &old_info)).map(|rows| {
        let divergent: Vec<i64> = rows.difference(&present).copied().collect();
        let after = divergent.iter().filter(|v| **v >= first_sent_after).count();
        (divergent.len(), after)
    });
    let reads_from_old_after = r.served_by_after(old_info.host.parse().unwrap(), published);
    let figures = PrimaryLoss {
        old,
        new,
        fault_to_publication: published - at_fault,
        first_write,
        waiting_answered,
        longest_write_wait: w.longest_wait(),
        writes_acked: acked.len(),
        write_errors: w.errors_by_code(),
        write_messages: w.messages(),
        unanswered_writes: unanswered.len(),
        lost,
        old_divergent,
        reads_after: r.acked_between(published, end),
        reads_from_old_after,
        longest_read_wait: r.longest_wait(),
        read_errors: r.errors_by_code(),
        long_answer,
        long_after,
        long_committed,
    };
    (figures, ha, front, undo)
}

/// The values in `acks` on `member`, read with psql inside its own host
/// (over its loopback, which no fault cuts); None when it does not answer
/// within 30 s (hung, or still shutting down: demoted, it waits up to
/// `wal_sender_timeout` on walsenders whose replicas are cut off).
fn rows_inside(ha: &HaCluster, member: &MemberInfo) -> Option<HashSet<i64>> {
    let lab = ha.lab().expect("the cluster's hosts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut why = String::new();
    while Instant::now() < deadline {
        let mut cmd = lab.command(&member.name, "timeout".as_ref());
        cmd.arg("5")
            .arg(crate::tools::pg_bin("psql"))
            .args(["-X", "-A", "-t", "-q", "-h", &member.host])
            .args(["-p", &member.pg_port.to_string(), "-U", HA_APP_USER])
            .args(["-d", HA_APP_DB, "-c", "SELECT v FROM acks"])
            .env("PGPASSWORD", HA_APP_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "3");
        match cmd.output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                return Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect());
            }
            Ok(out) => why = String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => why = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{} not readable inside its host: {why}", member.name);
    None
}

/// `at - from` in seconds, negative when `at` came first.
fn signed(at: Instant, from: Instant) -> f64 {
    if at >= from {
        (at - from).as_secs_f64()
    } else {
        -(from - at).as_secs_f64()
    }
}
