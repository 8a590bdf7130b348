//! Scenarios that keep the primary (a replica, etcd or the REST API cut
//! off): what the fault cost the clients while it lasted.

use super::{cluster_behind, Front, Load, Pooler};
use crate::ha::{HaCluster, HaOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What a fault that leaves the primary where it was (or takes it away
/// only while the fault lasts) cost the clients.
#[derive(Debug)]
pub struct Outage {
    pub fault_lasted: Duration,
    pub writes_during: usize,
    pub reads_during: usize,
    pub longest_write_wait: Duration,
    pub longest_read_wait: Duration,
    pub write_errors: BTreeMap<String, usize>,
    pub read_errors: BTreeMap<String, usize>,
    pub write_messages: BTreeSet<String>,
    pub read_messages: BTreeSet<String>,
    /// Requests (writes and reads) still unanswered at the end.
    pub unanswered: usize,
    /// The fault to the last write acknowledged before the heal.
    pub writes_stopped: Option<Duration>,
    /// The heal to the first write acknowledged after it; None: none
    /// within the run.
    pub first_write_after_heal: Option<Duration>,
}

/// Runs [`Load`] (no long transaction) through `pooler` in front of a
/// cluster, lets `fault` act for `lasts`, undoes it with `heal`, and
/// observes `after` longer. Returns the figures, the cluster and the
/// pooler.
pub async fn ride_out<U>(
    pooler: Pooler,
    opts: HaOptions,
    lasts: Duration,
    after: Duration,
    fault: impl FnOnce(&HaCluster) -> U,
    heal: impl FnOnce(&HaCluster, U),
) -> (Outage, HaCluster, Front) {
    let (ha, front) = cluster_behind(pooler, opts).await;
    let load = Load::start(front.port(), false).await;
    let (w, r) = (load.writes.clone(), load.reads.clone());
    let cut = Instant::now();
    let undo = fault(&ha);
    tokio::time::sleep(lasts).await;
    let healed = Instant::now();
    heal(&ha, undo);
    tokio::time::sleep(after).await;
    load.stop().await;
    let times: Vec<Instant> = w.acked.lock().unwrap().iter().map(|(_, at)| *at).collect();
    let outage = Outage {
        fault_lasted: healed - cut,
        writes_during: w.acked_between(cut, healed),
        reads_during: r.acked_between(cut, healed),
        longest_write_wait: w.longest_wait(),
        longest_read_wait: r.longest_wait(),
        write_errors: w.errors_by_code(),
        read_errors: r.errors_by_code(),
        write_messages: w.messages(),
        read_messages: r.messages(),
        unanswered: w.unanswered.lock().unwrap().len() + r.unanswered.lock().unwrap().len(),
        writes_stopped: times
            .iter()
            .filter(|at| **at > cut && **at < healed)
            .max()
            .map(|at| *at - cut),
        first_write_after_heal: times
            .iter()
            .filter(|at| **at > healed)
            .min()
            .map(|at| *at - healed),
    };
    (outage, ha, front)
}
