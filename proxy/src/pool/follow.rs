//! A pool on a cluster follows its topology: when the member its role
//! points at changes (a new primary, a replica gone or lagging), the idle
//! connections close at once, by the same generation bump a reload uses,
//! and the checked-out ones to members that lost their role are retired:
//! the clients holding them end their transactions now. Waiting for check-in would wait on a member
//! that may never answer again (a lost node drops packets; TCP would take
//! minutes to give up), while new transactions already go elsewhere.

use super::{Inner, Retirer, Route};
use crate::config::TargetRole;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Also how often a reload that changed the pool's route is noticed here.
const RECHECK: Duration = Duration::from_secs(1);

/// Runs until the pool is dropped or stops being on a cluster.
pub(super) async fn follow(pool: Weak<Inner>, retire: Retirer) {
    let mut route: Option<Arc<Route>> = None;
    let mut rx = None;
    let mut key = Vec::new();
    // The primary last named: a view without one (a leader key that
    // expired, etcd back after an outage) retires nothing by itself.
    let mut last_primary = Vec::new();
    loop {
        {
            let Some(inner) = pool.upgrade() else { return };
            let Some(current) = inner.settings.load().route.clone() else {
                return;
            };
            if !route.as_ref().is_some_and(|r| Arc::ptr_eq(r, &current)) {
                let mut fresh = current.cluster.subscribe();
                key = current.members_key(&fresh.borrow_and_update());
                last_primary = match current.role {
                    TargetRole::Primary => key.clone(),
                    TargetRole::Replica => Vec::new(),
                };
                rx = Some(fresh);
                route = Some(current);
            }
        }
        let (Some(r), Some(watch)) = (route.as_ref(), rx.as_mut()) else {
            return;
        };
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    // The provider stopped (a reload replaced the cluster):
                    // pick up the new route at the next check.
                    tokio::time::sleep(RECHECK).await;
                    route = None;
                    continue;
                }
            }
            _ = tokio::time::sleep(RECHECK) => continue,
        }
        let next = r.members_key(&watch.borrow_and_update());
        if next != key {
            let Some(inner) = pool.upgrade() else { return };
            if !key.is_empty() || !last_primary.is_empty() {
                let generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
                let closed = {
                    let mut idle = inner.idle.lock().unwrap();
                    std::mem::take(&mut *idle).len()
                };
                // Writes must not wait on, or reach, a member that is no
                // longer primary: its connections are retired. Reads are
                // retired only on replicas that left the set (gone,
                // lagging, promoted); one that joined takes nothing from
                // the others.
                let lost: Vec<(String, u16)> = match r.role {
                    // Retired once another member is named, not while none
                    // is: without a leader key the old primary may still be
                    // the primary (Patroni's failsafe mode keeps it so while
                    // etcd is away), and if it is lost or demoted the new
                    // leader is named within a loop of Patroni's.
                    // Only the old primary's connections: one opened to the
                    // new primary before this task saw it stays.
                    TargetRole::Primary if !next.is_empty() && next != last_primary => {
                        retire(generation, &last_primary);
                        std::mem::take(&mut last_primary)
                    }
                    TargetRole::Primary => Vec::new(),
                    TargetRole::Replica => {
                        let lost: Vec<_> =
                            key.iter().filter(|m| !next.contains(m)).cloned().collect();
                        if !lost.is_empty() {
                            retire(generation, &lost);
                        }
                        lost
                    }
                };
                tracing::info!(db = %inner.key.db, user = %inner.key.user, cluster = %r.cluster.name, from = ?key, to = ?next, closed_idle = closed, retired_from = ?lost, "pool follows the topology");
            }
            if r.role == TargetRole::Primary && !next.is_empty() {
                last_primary.clone_from(&next);
            }
            key = next;
        }
    }
}
