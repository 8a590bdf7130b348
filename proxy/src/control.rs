//! Operations on a running pgwolf that the admin console (and through it
//! the `pgwolf switchover` CLI and the controller) drive: PAUSE, RESUME
//! and a planned switchover that clients do not see.

use crate::app::App;
use crate::config::{Provider, TargetRole};
use crate::pool::Pool;
use crate::topology::http;
use std::time::Duration;
use tokio::time::Instant;

/// Pools of `db` (every pool when None) whose new transactions now wait.
pub fn pause(app: &App, db: Option<&str>) -> usize {
    let pools = pools_of(app, db);
    pools.iter().for_each(Pool::pause);
    pools.len()
}

pub fn resume(app: &App, db: Option<&str>) -> usize {
    let pools = pools_of(app, db);
    pools.iter().for_each(Pool::resume);
    pools.len()
}

/// The pools of `db`, or every pool.
pub fn pools_of(app: &App, db: Option<&str>) -> Vec<Pool> {
    app.pools()
        .into_iter()
        .filter(|p| db.is_none_or(|d| p.key().db == d))
        .collect()
}

/// Bounds of one switchover.
#[derive(Debug, Clone, Copy)]
pub struct SwitchoverLimits {
    /// For transactions in flight to end once new ones wait.
    pub drain: Duration,
    /// For Patroni to answer and the new leader to be published.
    pub switch: Duration,
}

impl Default for SwitchoverLimits {
    fn default() -> Self {
        SwitchoverLimits {
            drain: Duration::from_secs(10),
            switch: Duration::from_secs(60),
        }
    }
}

/// A planned switchover of a Patroni cluster with no client-visible error:
/// new transactions on the cluster's primary pools wait, those in flight
/// finish (within `drain`), Patroni switches over (`POST /switchover`), and
/// once the new leader is known the pools reconnect to it and resume. The
/// pools resume whatever happens. Returns the new primary's name.
pub async fn switchover(
    app: &App,
    cluster: &str,
    candidate: Option<&str>,
    limits: SwitchoverLimits,
) -> Result<String, String> {
    let c = app
        .cluster_named(cluster)
        .ok_or_else(|| format!("no cluster \"{cluster}\" is configured"))?;
    if c.config.provider != Provider::Patroni {
        return Err(format!(
            "cluster \"{cluster}\" uses the static provider: only Patroni can switch over"
        ));
    }
    let leader = c
        .current()
        .primary()
        .map(|m| m.name.clone())
        .ok_or_else(|| format!("cluster \"{cluster}\" has no primary now"))?;
    if candidate == Some(leader.as_str()) {
        return Err(format!("\"{leader}\" is already the primary"));
    }
    let pools: Vec<Pool> = app
        .pools()
        .into_iter()
        .filter(|p| {
            p.settings()
                .route
                .as_ref()
                .is_some_and(|r| r.cluster.name == cluster && r.role == TargetRole::Primary)
        })
        .collect();
    tracing::info!(cluster, %leader, ?candidate, pools = pools.len(), "switchover: pausing");
    pools.iter().for_each(Pool::pause);
    let result = paused_switchover(&c, &pools, &leader, candidate, limits).await;
    // Idle connections point at the old primary, which Patroni restarts as
    // a replica: none may be reused.
    for p in &pools {
        if result.is_ok() {
            p.reconnect();
        }
        p.resume();
    }
    c.switchovers[usize::from(result.is_err())].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match &result {
        Ok(new) => tracing::info!(cluster, old = %leader, new = %new, "switchover done; resumed"),
        Err(e) => tracing::warn!(cluster, error = %e, "switchover failed; resumed"),
    }
    result
}

async fn paused_switchover(
    c: &crate::topology::Cluster,
    pools: &[Pool],
    leader: &str,
    candidate: Option<&str>,
    limits: SwitchoverLimits,
) -> Result<String, String> {
    let drained_by = Instant::now() + limits.drain;
    while pools.iter().any(|p| p.active() > 0) {
        if Instant::now() >= drained_by {
            let busy: u32 = pools.iter().map(Pool::active).sum();
            return Err(format!(
                "{busy} transaction(s) still running after {:?}; switchover not attempted",
                limits.drain
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut body = serde_json::json!({ "leader": leader });
    if let Some(cand) = candidate {
        body["candidate"] = cand.into();
    }
    let body = body.to_string();
    let deadline = Instant::now() + limits.switch;
    let mut last = String::new();
    let mut asked = false;
    for url in &c.config.patroni_urls {
        let left = deadline.saturating_duration_since(Instant::now());
        match http::request("POST", url, "/switchover", Some(body.clone()), left).await {
            Ok(r) if r.status == 200 => {
                asked = true;
                break;
            }
            Ok(r) => {
                // Patroni refused (no candidate, a switchover already on...):
                // another member would say the same.
                return Err(format!(
                    "Patroni refused the switchover ({}): {}",
                    r.status,
                    String::from_utf8_lossy(&r.body).trim()
                ));
            }
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    if !asked {
        return Err(format!("no Patroni REST API answered: {last}"));
    }
    let mut rx = c.subscribe();
    loop {
        let now = rx
            .borrow_and_update()
            .primary()
            .map(|m| m.name.clone())
            .filter(|n| n != leader);
        if let Some(new) = now {
            return Ok(new);
        }
        c.nudge();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "Patroni accepted the switchover but no new leader was published within {:?}",
                limits.switch
            ));
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), rx.changed()).await;
    }
}
