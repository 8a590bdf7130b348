//! A pool on a cluster follows its topology: when the member its role
//! points at changes (a new primary, a replica gone or lagging), the idle
//! connections close at once, by the same generation bump a reload uses,
//! and the checked-out ones to members that lost their role are retired:
//! the clients holding them end their transactions now. Waiting for check-in would wait on a member
//! that may never answer again (a lost node drops packets; TCP would take
//! minutes to give up), while new transactions already go elsewhere.

use super::{Inner, Retirer, Route};
use crate::config::TargetRole;
use crate::topology::{Role, Topology};
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
    // The primary last named, and the replicas (by role, whatever their
    // lag) of the last view that named a primary: a view without one (a
    // leader key that expired, etcd back after an outage, when Patroni
    // lists every member as a replica of unknown lag) retires nothing by
    // itself.
    let mut last_primary = Vec::new();
    let mut standing = Vec::new();
    loop {
        {
            let Some(inner) = pool.upgrade() else { return };
            let Some(current) = inner.settings.load().route.clone() else {
                return;
            };
            if !route.as_ref().is_some_and(|r| Arc::ptr_eq(r, &current)) {
                let mut fresh = current.cluster.subscribe();
                let view = fresh.borrow_and_update();
                key = current.members_key(&view);
                standing = replicas_by_role(&view);
                drop(view);
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
        let (next, lost_replicas) = {
            let view = watch.borrow_and_update();
            let next = r.members_key(&view);
            // A replica that fell behind max_replica_lag gets no new reads
            // but finishes those it has; one that is gone, not running, or
            // promoted has its reads ended.
            let mut lost = Vec::new();
            if view.primary().is_some() {
                let now = replicas_by_role(&view);
                lost = standing
                    .iter()
                    .filter(|m| !now.contains(m))
                    .cloned()
                    .collect();
                standing = now;
            }
            (next, lost)
        };
        // Ended only where the server is gone: a replica that left the view
        // but still accepts connections (its member key expired while etcd
        // was away and is not back yet; its Patroni died) finishes the
        // reads it has, and gets no new ones while it is out.
        let lost_replicas = if r.role == TargetRole::Replica && !lost_replicas.is_empty() {
            unreachable(lost_replicas, r.cluster.config.probe_timeout).await
        } else {
            lost_replicas
        };
        let replica_lost = r.role == TargetRole::Replica && !lost_replicas.is_empty();
        if next != key || replica_lost {
            let Some(inner) = pool.upgrade() else { return };
            if !key.is_empty() || !last_primary.is_empty() {
                let generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
                let closed = {
                    let mut idle = inner.idle.lock().unwrap();
                    std::mem::take(&mut *idle).len()
                };
                // Writes must not wait on, or reach, a member that is no
                // longer primary: its connections are retired. Reads are
                // retired only on replicas that left (gone, not running,
                // promoted); one that joined takes nothing from the others.
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
                        if !lost_replicas.is_empty() {
                            retire(generation, &lost_replicas);
                        }
                        lost_replicas
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

/// The members listed as replicas, whatever their lag, sorted.
fn replicas_by_role(t: &Topology) -> Vec<(String, u16)> {
    let mut v: Vec<_> = t
        .members
        .iter()
        .filter(|m| m.role == Role::Replica)
        .map(|m| m.addr())
        .collect();
    v.sort();
    v
}

/// Those of `members` that do not accept a TCP connection within `limit`.
async fn unreachable(members: Vec<(String, u16)>, limit: Duration) -> Vec<(String, u16)> {
    let checks = members.into_iter().map(|(host, port)| async move {
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        let alive = matches!(tokio::time::timeout(limit, connect).await, Ok(Ok(_)));
        (!alive).then_some((host, port))
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}
