//! A pool on a cluster: which member a new server connection goes to, the
//! check that a "primary" connection is not a standby, the bounded wait
//! while no primary is known, and the signal that idle connections must go
//! when the member they point at changes.

use super::PoolError;
use crate::config::TargetRole;
use crate::server::{ServerConn, ServerError, ServerTarget};
use crate::topology::{Cluster, Topology};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Route {
    pub cluster: Arc<Cluster>,
    pub role: TargetRole,
    next: AtomicUsize,
}

/// Retried connection failures back off from this...
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// ...to this, well under Patroni's loop_wait, so the new leader is tried
/// soon after it is published.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

impl Route {
    pub fn new(cluster: Arc<Cluster>, role: TargetRole) -> Self {
        Route {
            cluster,
            role,
            next: AtomicUsize::new(0),
        }
    }

    pub fn same(&self, other: &Route) -> bool {
        Arc::ptr_eq(&self.cluster, &other.cluster) && self.role == other.role
    }

    /// The members connections of this role point at: when it changes,
    /// the pool's idle connections are closed.
    pub fn members_key(&self, t: &Topology) -> Vec<(String, u16)> {
        match self.role {
            TargetRole::Primary => t.primary().map(|m| m.addr()).into_iter().collect(),
            TargetRole::Replica => {
                let mut v: Vec<_> = t
                    .replicas(self.cluster.config.max_replica_lag)
                    .map(|m| m.addr())
                    .collect();
                v.sort();
                v
            }
        }
    }

    /// Where the next connection goes, if anywhere now.
    fn pick(&self, t: &Topology) -> Option<(String, u16)> {
        let primary = || t.primary().map(|m| m.addr());
        match self.role {
            TargetRole::Primary => primary(),
            TargetRole::Replica => {
                let replicas: Vec<_> = t.replicas(self.cluster.config.max_replica_lag).collect();
                if replicas.is_empty() {
                    return self.cluster.config.replica_fallback.then(primary).flatten();
                }
                let i = self.next.fetch_add(1, Ordering::Relaxed) % replicas.len();
                Some(replicas[i].addr())
            }
        }
    }

    /// Opens a connection to a member of this role through `open_at` (which
    /// takes the connection-count permits and logs in), waiting up to
    /// `failover_wait_timeout` while no member qualifies or the chosen one
    /// cannot be reached. A primary connection that turns out to be a
    /// standby is closed and never used, whatever the topology said.
    ///
    /// Also returns how long it waited (for the failover-wait metric).
    pub async fn connect<F, Fut>(
        &self,
        base: &ServerTarget,
        mut open_at: F,
    ) -> (Result<ServerConn, PoolError>, Duration)
    where
        F: FnMut(ServerTarget) -> Fut,
        Fut: Future<Output = Result<ServerConn, PoolError>>,
    {
        let wait = self.cluster.config.failover_wait_timeout;
        let deadline = Instant::now() + wait;
        let mut rx = self.cluster.subscribe();
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::from("no member has the role");
        let mut waited = Duration::ZERO;
        loop {
            let picked = self.pick(&rx.borrow_and_update());
            if let Some((host, port)) = picked {
                let mut target = base.clone();
                target.host = host;
                target.port = port;
                let addr = target.addr();
                let Some(opened) = self
                    .open_unless_moved(open_at(target), &mut rx, &addr)
                    .await
                else {
                    // A newer topology no longer names this member: what it
                    // names now is tried at once, not after this one's
                    // connect or login timeout.
                    tracing::info!(cluster = %self.cluster.name, server = %addr, "stopped connecting to a member that lost its role");
                    last = format!("{addr} lost its role while pgwolf connected");
                    continue;
                };
                match opened {
                    Ok(mut conn) => {
                        if self.role == TargetRole::Replica {
                            return (Ok(conn), waited);
                        }
                        match is_standby(&mut conn).await {
                            Ok(false) => return (Ok(conn), waited),
                            Ok(true) => {}
                            Err(e) => return (Err(e), waited),
                        }
                        tracing::warn!(cluster = %self.cluster.name, server = %addr, "listed as primary but in recovery: not used for writes");
                        last = format!("{addr} is in recovery");
                    }
                    Err(e) if retryable(&e) => {
                        tracing::debug!(cluster = %self.cluster.name, server = %addr, error = %e, "cannot reach member; waiting for the topology");
                        last = format!("{addr}: {e}");
                    }
                    Err(e) => return (Err(e), waited),
                }
                self.cluster.nudge();
            }
            let now = Instant::now();
            if now >= deadline {
                let err = PoolError::NoMember {
                    cluster: self.cluster.name.clone(),
                    role: self.role,
                    waited: wait,
                    last,
                };
                return (Err(err), waited);
            }
            let until = deadline.min(now + backoff);
            tokio::select! {
                _ = rx.changed() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
            waited += now.elapsed();
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl Route {
    /// `opening` to completion, or None as soon as the topology stops
    /// naming `addr` for this role (a lost node may keep a connect or a
    /// login waiting for its whole timeout).
    async fn open_unless_moved<Fut>(
        &self,
        opening: Fut,
        rx: &mut tokio::sync::watch::Receiver<Topology>,
        addr: &str,
    ) -> Option<Result<ServerConn, PoolError>>
    where
        Fut: Future<Output = Result<ServerConn, PoolError>>,
    {
        let mut opening = std::pin::pin!(opening);
        let mut watching = true;
        loop {
            tokio::select! {
                r = &mut opening => return Some(r),
                changed = rx.changed(), if watching => {
                    if changed.is_err() {
                        // The provider stopped: only the opening is left.
                        watching = false;
                        continue;
                    }
                    let named = self
                        .members_key(&rx.borrow())
                        .iter()
                        .any(|(h, p)| format!("{h}:{p}") == addr);
                    if !named {
                        return None;
                    }
                }
            }
        }
    }
}

/// Whether the server is a hot standby: PostgreSQL 14 and later report
/// `in_hot_standby` at login, so this costs no round trip there.
async fn is_standby(conn: &mut ServerConn) -> Result<bool, PoolError> {
    if let Some((_, v)) = conn.reported.iter().find(|(k, _)| k == "in_hot_standby") {
        return Ok(v == "on");
    }
    let v = conn.query_value("SELECT pg_is_in_recovery()").await?;
    Ok(v.as_deref() != Some("f"))
}

/// Failures a failover explains: the member is down, restarting, or no
/// longer takes connections. Authentication and configuration errors are
/// not retried: waiting would not fix them.
fn retryable(e: &PoolError) -> bool {
    match e {
        PoolError::Server(ServerError::Server { code, .. }) => {
            // cannot_connect_now (starting up, shutting down), admin_shutdown,
            // crash_shutdown, read_only_sql_transaction.
            matches!(code.as_str(), "57P03" | "57P01" | "57P02" | "25006")
        }
        PoolError::Server(
            ServerError::Connect { .. }
            | ServerError::Timeout { .. }
            | ServerError::Io(_)
            | ServerError::Closed,
        ) => true,
        _ => false,
    }
}
