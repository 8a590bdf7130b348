//! The `static` provider: a fixed host list, each member's role found with
//! `SELECT pg_is_in_recovery()` every `poll_interval` (and at once when a
//! pool asks) over one kept connection per member, logged in as the
//! cluster's probe user; members are probed independently.

use super::{publish, Member, Role, Topology};
use crate::config::ClusterConfig;
use crate::server::{self, ServerConn, ServerTarget};
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Notify};
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
    // Each member is probed by a task of its own and the view published
    // at each answer: a member that answers nothing (a lost node, a hung
    // server) costs probe_timeout for itself only, and must not hold back
    // the promotion another member reports (measured: with one round for
    // all, the first write after a failover came 1.4 s after Patroni's
    // publication with probe_timeout = 1s, against 0.1 s with the
    // patroni provider).
    let (report_tx, mut reports) = mpsc::channel(addrs.len().max(1));
    let (round_tx, round_rx) = watch::channel(0u64);
    for (index, (host, port)) in addrs.iter().enumerate() {
        tokio::spawn(probe_member(
            index,
            (host.clone(), *port),
            target.clone(),
            cfg.clone(),
            report_tx.clone(),
            round_rx.clone(),
            stop.clone(),
        ));
    }
    drop(report_tx);
    // Not probed yet: Unknown, which serves nothing, and no error.
    let mut states: Vec<Result<Role, String>> = vec![Ok(Role::Unknown); addrs.len()];
    loop {
        tokio::select! {
            report = reports.recv() => {
                let Some((index, state)) = report else { return };
                states[index] = state;
            }
            // A pool that could not reach its member asks for a new round
            // of every probe now.
            _ = nudge.notified() => {
                round_tx.send_modify(|round| *round += 1);
                continue;
            }
            _ = stop.cancelled() => return,
        }
        let mut members = Vec::with_capacity(addrs.len());
        let mut errors = Vec::new();
        for ((host, port), state) in addrs.iter().zip(&states) {
            let role = match state {
                Ok(role) => *role,
                Err(e) => {
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
    }
}

/// One member's probe loop: probe, report, wait `poll_interval` or the
/// next nudged round, until `stop` or the provider ends.
async fn probe_member(
    index: usize,
    (host, port): (String, u16),
    target: ServerTarget,
    cfg: ClusterConfig,
    report: mpsc::Sender<(usize, Result<Role, String>)>,
    mut round: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut conn = None;
    loop {
        let state = tokio::select! {
            state = probe(&target, &host, port, &mut conn, &cfg) => state,
            _ = stop.cancelled() => return,
        };
        if state.is_err() {
            conn = None;
        }
        if report.send((index, state)).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll_interval) => {}
            changed = round.changed() => if changed.is_err() { return },
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
