//! The `patroni` provider: `GET /cluster` on any reachable member, every
//! `poll_interval`, and at once when a pool asks. Patroni answers from its
//! DCS view, so one live member describes them all, the dead leader too.

use super::http;
use super::{publish, Member, Role, Topology};
use crate::config::ClusterConfig;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub async fn run(
    cluster: String,
    cfg: ClusterConfig,
    tx: watch::Sender<Topology>,
    nudge: Arc<Notify>,
    stop: CancellationToken,
) {
    // Start where the last answer came from; move on when it fails.
    let mut first = 0;
    loop {
        let mut last_error = String::new();
        let mut got = None;
        for i in 0..cfg.patroni_urls.len() {
            let idx = (first + i) % cfg.patroni_urls.len();
            let url = &cfg.patroni_urls[idx];
            match fetch(url, &cfg).await {
                Ok(members) => {
                    first = idx;
                    got = Some(members);
                    break;
                }
                Err(e) => {
                    tracing::debug!(cluster, url, error = %e, "Patroni REST API");
                    last_error = format!("{url}: {e}");
                }
            }
        }
        let next = match got {
            Some(members) => Topology {
                members,
                ..Topology::default()
            },
            None => {
                // No member answers: keep the roles last known. A new
                // primary connection is still checked (in_hot_standby), and
                // a demoted primary's connections are closed by its restart;
                // stalling every write on a REST outage would be worse.
                let mut t = tx.borrow().clone();
                t.error = Some(last_error);
                t
            }
        };
        publish(&cluster, &tx, next);
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll_interval) => {}
            _ = nudge.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn fetch(url: &str, cfg: &ClusterConfig) -> Result<Vec<Member>, String> {
    let r = http::request("GET", url, "/cluster", None, cfg.probe_timeout)
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("GET /cluster answered {}", r.status));
    }
    parse_cluster(&r.body)
}

/// Members of a `GET /cluster` body. The leader counts as primary only
/// while its state is `running`: during a crash-restart it keeps the
/// leader key but cannot take writes (`/primary` would still say 200).
pub fn parse_cluster(body: &[u8]) -> Result<Vec<Member>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let list = v
        .get("members")
        .and_then(Value::as_array)
        .ok_or("no `members` list")?;
    let mut members = Vec::with_capacity(list.len());
    for m in list {
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
        let (Some(host), Some(port)) = (
            m.get("host").and_then(Value::as_str),
            m.get("port").and_then(Value::as_u64),
        ) else {
            // A member still bootstrapping may have no address yet.
            continue;
        };
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        let running = matches!(text("state"), "running" | "streaming");
        let role = match text("role") {
            "leader" | "master" | "primary" if running => Role::Primary,
            // A standby cluster's leader is read-only, like any replica.
            "replica" | "sync_standby" | "quorum_standby" | "standby_leader" if running => {
                Role::Replica
            }
            _ => Role::Unknown,
        };
        // Patroni reports lag in bytes, or "unknown".
        let lag = match m.get("lag") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(_) => Some(u64::MAX),
            None => None,
        };
        members.push(Member {
            name: text("name").to_string(),
            host: host.to_string(),
            port,
            role,
            lag: if role == Role::Replica { lag } else { None },
        });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape Patroni 3.0.2 answers (see the local HA cluster notes).
    const CLUSTER: &str = r#"{"members": [
      {"name": "pg1", "role": "replica", "state": "running", "api_url": "http://127.0.0.1:64001/patroni",
       "host": "127.0.0.1", "port": 65431, "timeline": 1, "lag": 0},
      {"name": "pg2", "role": "leader",  "state": "running", "api_url": "http://127.0.0.1:64002/patroni",
       "host": "127.0.0.1", "port": 65432, "timeline": 1},
      {"name": "pg3", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 65433,
       "timeline": 1, "lag": "unknown"}]}"#;

    #[test]
    fn leader_and_replicas() {
        let ms = parse_cluster(CLUSTER.as_bytes()).unwrap();
        let t = Topology {
            members: ms,
            ..Topology::default()
        };
        let p = t.primary().unwrap();
        assert_eq!((p.name.as_str(), p.port), ("pg2", 65432));
        let r: Vec<_> = t.replicas(1 << 20).map(|m| m.name.as_str()).collect();
        assert_eq!(r, ["pg1"], "unknown lag never qualifies");
        assert_eq!(t.members[2].role, Role::Replica);
    }

    #[test]
    fn a_leader_not_running_is_no_primary() {
        for state in ["starting", "crashed", "stopped", "unknown", "restarting"] {
            let body = format!(
                r#"{{"members":[{{"name":"a","role":"leader","state":"{state}","host":"h","port":1}}]}}"#
            );
            let ms = parse_cluster(body.as_bytes()).unwrap();
            assert_eq!(ms[0].role, Role::Unknown, "{state}");
        }
    }

    #[test]
    fn members_without_an_address_are_skipped_and_bad_bodies_are_errors() {
        let ms = parse_cluster(
            br#"{"members":[{"name":"new","role":"replica","state":"creating replica"}]}"#,
        )
        .unwrap();
        assert!(ms.is_empty());
        assert!(parse_cluster(b"<html>").is_err());
        assert!(parse_cluster(b"{}").is_err());
    }
}
