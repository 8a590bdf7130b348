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
    let unprobed = Probed {
        role: Role::Unknown,
        lsn: None,
        streaming: false,
    };
    let mut states: Vec<Result<Probed, String>> = vec![Ok(unprobed); addrs.len()];
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
        let (members, errors) = members(&addrs, &states);
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
    report: mpsc::Sender<(usize, Result<Probed, String>)>,
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

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probed {
    role: Role,
    /// The primary's current WAL position, or what a replica has replayed.
    lsn: Option<u64>,
    /// A standby with a WAL receiver running (streaming from a primary).
    streaming: bool,
}

/// Role, WAL position and whether a WAL receiver runs, in one round trip
/// (the view shows the receiver's pid to any role, unlike its other
/// columns).
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     (SELECT count(*) FROM pg_stat_wal_receiver)";

async fn probe(
    target: &ServerTarget,
    host: &str,
    port: u16,
    conn: &mut Option<ServerConn>,
    cfg: &ClusterConfig,
) -> Result<Probed, String> {
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
        let row = c.query_row(PROBE_SQL).await.map_err(|e| e.to_string())?;
        parse_probe(row.as_deref())
    };
    tokio::time::timeout(cfg.probe_timeout, work)
        .await
        .map_err(|_| format!("no answer within probe_timeout ({:?})", cfg.probe_timeout))?
}

fn parse_probe(row: Option<&[Option<String>]>) -> Result<Probed, String> {
    let col = |i: usize| row.and_then(|r| r.get(i)).and_then(|v| v.as_deref());
    let lsn = col(1).and_then(parse_lsn);
    let (role, streaming) = match (col(0), col(2)) {
        (Some("f"), _) => (Role::Primary, false),
        (Some("t"), Some(receivers)) => (Role::Replica, receivers != "0"),
        _ => return Err(format!("the role probe answered {row:?}")),
    };
    Ok(Probed {
        role,
        lsn,
        streaming,
    })
}

/// `16/B374D848` as a byte position.
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The members as published: a replica's lag is the bytes between the
/// one primary's current position and its replay position (None while no
/// single primary is known). While a primary is known, a standby that
/// streams from no one gets no reads (role unknown): its data stops where
/// it lost its primary, as a demoted primary's does when Patroni restarts
/// it read-only while it is cut off from the cluster (measured: 17,214
/// reads served by such a member after the new leader was published,
/// before this). With no primary anywhere, it is as fresh as any member
/// and keeps serving reads.
fn members(
    addrs: &[(String, u16)],
    states: &[Result<Probed, String>],
) -> (Vec<Member>, Vec<String>) {
    let primaries: Vec<u64> = states
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .filter(|p| p.role == Role::Primary)
        .map(|p| p.lsn.unwrap_or(0))
        .collect();
    let primary_lsn = match primaries[..] {
        [one] => Some(one),
        _ => None,
    };
    let mut errors = Vec::new();
    let members = addrs
        .iter()
        .zip(states)
        .map(|((host, port), state)| {
            let (role, lag) = match state {
                Ok(p) if p.role == Role::Replica && !p.streaming && primary_lsn.is_some() => {
                    errors.push(format!(
                        "{host}:{port}: a standby that streams from no primary: no reads"
                    ));
                    (Role::Unknown, None)
                }
                Ok(p) if p.role == Role::Replica => (
                    Role::Replica,
                    primary_lsn
                        .zip(p.lsn)
                        .map(|(at, replayed)| at.saturating_sub(replayed)),
                ),
                Ok(p) => (p.role, None),
                Err(e) => {
                    errors.push(format!("{host}:{port}: {e}"));
                    (Role::Unknown, None)
                }
            };
            Member {
                name: format!("{host}:{port}"),
                host: host.clone(),
                port: *port,
                role,
                lag,
            }
        })
        .collect();
    (members, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cols: &[Option<&str>]) -> Vec<Option<String>> {
        cols.iter().map(|c| c.map(str::to_string)).collect()
    }

    fn probed(role: Role, lsn: u64, streaming: bool) -> Result<Probed, String> {
        Ok(Probed {
            role,
            lsn: Some(lsn),
            streaming,
        })
    }

    #[test]
    fn the_probe_row_is_parsed() {
        let p = |cols: &[Option<&str>]| parse_probe(Some(&row(cols))).unwrap();
        let primary = p(&[Some("f"), Some("0/3000060"), Some("0")]);
        assert_eq!(
            (primary.role, primary.lsn),
            (Role::Primary, Some(0x300_0060))
        );
        let standby = p(&[Some("t"), Some("0/3000060"), Some("1")]);
        assert_eq!((standby.role, standby.streaming), (Role::Replica, true));
        assert!(!p(&[Some("t"), None, Some("0")]).streaming);
        assert!(parse_probe(None).is_err());
        assert!(parse_probe(Some(&row(&[None, None, None]))).is_err());
    }

    #[test]
    fn lag_is_measured_against_the_one_primary() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
        let addrs: Vec<(String, u16)> = (1..=3).map(|i| ("h".to_string(), i)).collect();
        let states = [
            probed(Role::Primary, 5000, false),
            probed(Role::Replica, 4000, true),
            Err("down".into()),
        ];
        let (ms, errors) = members(&addrs, &states);
        assert_eq!(ms[1].lag, Some(1000));
        assert_eq!((ms[2].role, errors.len()), (Role::Unknown, 1));
        // Two claimants: no primary, so no lag either.
        let states = [
            probed(Role::Primary, 5000, false),
            probed(Role::Replica, 4000, true),
            probed(Role::Primary, 1, false),
        ];
        assert_eq!(members(&addrs, &states).0[1].lag, None);
    }

    #[test]
    fn a_standby_streaming_from_no_one_serves_only_while_there_is_no_primary() {
        let addrs: Vec<(String, u16)> = (1..=2).map(|i| ("h".to_string(), i)).collect();
        let cut_off = probed(Role::Replica, 1, false);
        let (ms, errors) = members(&addrs, &[probed(Role::Primary, 1, false), cut_off.clone()]);
        assert_eq!((ms[1].role, errors.len()), (Role::Unknown, 1));
        let (ms, errors) = members(&addrs, &[Err("down".into()), cut_off]);
        assert_eq!((ms[1].role, errors.len()), (Role::Replica, 1));
    }
}
