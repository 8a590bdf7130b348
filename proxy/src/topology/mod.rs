//! Where a cluster's primary and replicas are, now. One provider task per
//! configured cluster keeps a [`Topology`] snapshot in a `watch` channel;
//! pools read it when they open a server connection and follow its changes
//! (see `pool::route`).
//!
//! - [`patroni`]: Patroni's REST API (`GET /cluster`), polled.
//! - [`probe`]: a static host list, roles found with `pg_is_in_recovery()`.
//! - [`kubernetes`]: the leader Endpoints and member Pods Patroni's
//!   Kubernetes DCS maintains, watched with kube-rs.
//! - [`http`]: the one-request HTTP client the Patroni provider uses.

pub mod http;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod patroni;
pub mod probe;

use crate::config::{ClusterConfig, Provider};
use crate::server::ServerTarget;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Replica,
    /// Reachable or listed, but in no state to serve (starting, crashed...).
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub role: Role,
    /// Replication lag in bytes, where the provider knows it.
    pub lag: Option<u64>,
}

impl Member {
    pub fn addr(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

/// One snapshot of a cluster. Members keep the provider's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub members: Vec<Member>,
    /// Why the last refresh failed, if it did (the members are then the
    /// last ones known).
    pub error: Option<String>,
    /// How often the primary changed since the provider started (metrics).
    pub primary_changes: u64,
    /// When a member last appeared, left or changed role (SHOW TOPOLOGY,
    /// /topology); None before the first members are known.
    pub changed_at: Option<std::time::SystemTime>,
    /// When the primary last changed (or was first known, or lost).
    pub primary_changed_at: Option<std::time::SystemTime>,
}

impl Topology {
    /// The one member serving as primary. Two members claiming it (a
    /// static list during a split brain) is no primary: writes wait rather
    /// than pick one.
    pub fn primary(&self) -> Option<&Member> {
        let mut primaries = self.members.iter().filter(|m| m.role == Role::Primary);
        let first = primaries.next()?;
        primaries.next().is_none().then_some(first)
    }

    /// Replicas lagging at most `max_lag` bytes (unknown lag qualifies).
    pub fn replicas(&self, max_lag: u64) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(move |m| m.role == Role::Replica && m.lag.is_none_or(|l| l <= max_lag))
    }
}

/// A running provider: its snapshot channel and a way to ask for an early
/// refresh (a pool that just failed to reach the primary does).
pub struct Cluster {
    pub name: String,
    pub config: ClusterConfig,
    rx: watch::Receiver<Topology>,
    nudge: Arc<Notify>,
    stop: CancellationToken,
    /// Planned switchovers run on this cluster (`SWITCHOVER`), by outcome:
    /// done, failed (metrics).
    pub switchovers: [std::sync::atomic::AtomicU64; 2],
}

impl Cluster {
    /// Starts the provider task. `probe_target` is the login the static
    /// provider probes with (host and port are replaced per member).
    pub fn start(
        name: &str,
        config: ClusterConfig,
        probe_target: Option<ServerTarget>,
    ) -> Arc<Self> {
        let (tx, rx) = watch::channel(Topology::default());
        let nudge = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task_nudge = nudge.clone();
        let task_stop = stop.clone();
        let cfg = config.clone();
        let cluster = name.to_string();
        match config.provider {
            Provider::Patroni => {
                tokio::spawn(patroni::run(cluster, cfg, tx, task_nudge, task_stop));
            }
            #[cfg(feature = "kubernetes")]
            Provider::Kubernetes => {
                tokio::spawn(kubernetes::run(cluster, cfg, tx, task_nudge, task_stop));
            }
            #[cfg(not(feature = "kubernetes"))]
            Provider::Kubernetes => {
                let _ = (cfg, task_nudge, task_stop);
                tx.send_replace(Topology {
                    error: Some(format!(
                        "cluster \"{cluster}\": this pgwolf was built without the kubernetes provider (cargo feature `kubernetes`)"
                    )),
                    ..Topology::default()
                });
            }
            Provider::Static => {
                let target = probe_target.expect("validated: static clusters have a probe login");
                tokio::spawn(probe::run(cluster, cfg, target, tx, task_nudge, task_stop));
            }
        }
        Arc::new(Cluster {
            switchovers: Default::default(),
            name: name.to_string(),
            config,
            rx,
            nudge,
            stop,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Topology> {
        self.rx.clone()
    }

    pub fn current(&self) -> Topology {
        self.rx.borrow().clone()
    }

    /// Refresh now rather than at the next interval.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }
}

impl Cluster {
    /// Ends the provider task (a reload removed or changed the cluster);
    /// pools still holding this handle keep its last snapshot.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Replaces the snapshot when it differs, logging role changes.
pub(crate) fn publish(cluster: &str, tx: &watch::Sender<Topology>, mut next: Topology) {
    tx.send_if_modified(|cur| {
        next.primary_changes = cur.primary_changes;
        next.primary_changed_at = cur.primary_changed_at;
        let roles = |t: &Topology| -> Vec<(String, Role)> {
            t.members.iter().map(|m| (m.name.clone(), m.role)).collect()
        };
        next.changed_at = if roles(cur) == roles(&next) {
            cur.changed_at
        } else {
            Some(std::time::SystemTime::now())
        };
        if *cur == next {
            return false;
        }
        let was = cur.primary().map(|m| m.name.clone());
        let now = next.primary().map(|m| m.name.clone());
        if was != now {
            next.primary_changes += 1;
            next.primary_changed_at = Some(std::time::SystemTime::now());
            match &now {
                Some(p) => tracing::info!(cluster, primary = %p, previous = ?was, "primary changed"),
                None => tracing::warn!(cluster, previous = ?was, error = ?next.error, "no primary known"),
            }
        }
        *cur = next;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, role: Role, lag: Option<u64>) -> Member {
        Member {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 5432,
            role,
            lag,
        }
    }

    #[test]
    fn one_primary_or_none() {
        let mut t = Topology {
            members: vec![m("a", Role::Replica, Some(0)), m("b", Role::Primary, None)],
            ..Topology::default()
        };
        assert_eq!(t.primary().unwrap().name, "b");
        t.members.push(m("c", Role::Primary, None));
        assert!(t.primary().is_none(), "two claimants: no primary");
        t.members.truncate(1);
        assert!(t.primary().is_none());
    }

    #[test]
    fn replicas_within_lag() {
        let t = Topology {
            members: vec![
                m("a", Role::Replica, Some(10)),
                m("b", Role::Replica, Some(1000)),
                m("c", Role::Replica, None),
                m("d", Role::Unknown, Some(0)),
                m("e", Role::Primary, None),
            ],
            ..Topology::default()
        };
        let names: Vec<_> = t.replicas(100).map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }
}
