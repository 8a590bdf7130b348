//! The `static` provider: a fixed host list, each member's role found with
//! `SELECT pg_is_in_recovery()` every `poll_interval` (and at once when a
//! pool asks) over one kept connection per member, logged in as the
//! cluster's probe user.

use super::{publish, Member, Role, Topology};
use crate::config::ClusterConfig;
use crate::server::{self, ServerConn, ServerTarget};
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub async fn run(
    cluster: String,
    cfg: ClusterConfig,
    target: ServerTarget,
    tx: watch::Sender<Topology>,
    nudge: Arc<Notify>,
    stop: CancellationToken,
) {
    let addrs: Vec<(String, u16)> = cfg
        .hosts
        .iter()
        .filter_map(|h| crate::config::split_host_port(h))
        .collect();
    let mut conns: Vec<Option<ServerConn>> = addrs.iter().map(|_| None).collect();
    loop {
        // Members are probed one after another: a few, each bounded by
        // probe_timeout, and the round restarts at once when nudged.
        let mut members = Vec::with_capacity(addrs.len());
        let mut errors = Vec::new();
        for ((host, port), conn) in addrs.iter().zip(conns.iter_mut()) {
            let role = match probe(&target, host, *port, conn, &cfg).await {
                Ok(role) => role,
                Err(e) => {
                    *conn = None;
                    errors.push(format!("{host}:{port}: {e}"));
                    Role::Unknown
                }
            };
            members.push(Member {
                name: format!("{host}:{port}"),
                host: host.clone(),
                port: *port,
                role,
                lag: None,
            });
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        publish(
            &cluster,
            &tx,
            Topology {
                members,
                error,
                ..Topology::default()
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll_interval) => {}
            _ = nudge.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn probe(
    target: &ServerTarget,
    host: &str,
    port: u16,
    conn: &mut Option<ServerConn>,
    cfg: &ClusterConfig,
) -> Result<Role, String> {
    let work = async {
        if conn.is_none() {
            let mut t = target.clone();
            t.host = host.to_string();
            t.port = port;
            *conn = Some(
                server::connect(&t, 0, Vec::new())
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let c = conn.as_mut().expect("connected above");
        match c.query_value("SELECT pg_is_in_recovery()").await {
            Ok(Some(v)) if v == "f" => Ok(Role::Primary),
            Ok(Some(v)) if v == "t" => Ok(Role::Replica),
            Ok(other) => Err(format!("pg_is_in_recovery() answered {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(cfg.probe_timeout, work)
        .await
        .map_err(|_| format!("no answer within probe_timeout ({:?})", cfg.probe_timeout))?
}
