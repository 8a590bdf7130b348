//! Reading the cluster's state: Patroni's and etcd's REST answers, the
//! readiness conditions, and a real write.

use super::http;
use super::{MemberInfo, MemberStatus, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use crate::clients::psql_command;
use crate::tools::run_bounded;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const HTTP_LIMIT: Duration = Duration::from_secs(2);
const WRITE_LIMIT: Duration = Duration::from_secs(10);

/// One pass over the readiness conditions for the members in `up`;
/// `Ok(leader)`, or `Err` saying which condition failed. With
/// `synchronous`, a standby must also be Patroni's `sync_standby` and the
/// leader's `pg_stat_replication` must list it as `sync`: until then a
/// commit does not wait for it.
pub fn ready_check(
    etcd: SocketAddr,
    up: &[&MemberInfo],
    synchronous: bool,
) -> Result<String, String> {
    if !etcd_healthy(etcd) {
        return Err("etcd /health is not true".into());
    }
    let mut statuses = Vec::new();
    for m in up {
        let status = get_json(m.rest(), "/patroni")?;
        if status["state"] != "running" {
            return Err(format!("{}: /patroni state {}", m.name, status["state"]));
        }
        statuses.push(status);
    }
    let mut primaries = Vec::new();
    for (m, status) in up.iter().zip(&statuses) {
        if get_status(m.rest(), "/primary")? == 200 {
            primaries.push((*m, status));
        }
    }
    let [(leader, leader_status)] = primaries[..] else {
        let names: Vec<&str> = primaries.iter().map(|(m, _)| m.name.as_str()).collect();
        return Err(format!("/primary answers 200 on {names:?}"));
    };
    // Patroni 3.0 says "master", later releases "primary".
    let role = &leader_status["role"];
    if role != "master" && role != "primary" {
        return Err(format!("{}: /primary 200 but role {role}", leader.name));
    }
    let view = cluster(leader.rest()).ok_or("no parsable /cluster")?;
    let leaders: Vec<&str> = view
        .iter()
        .filter(|s| s.role == "leader")
        .map(|s| s.name.as_str())
        .collect();
    if leaders != [leader.name.as_str()] {
        return Err(format!(
            "/primary on {} but /cluster leaders {leaders:?}",
            leader.name
        ));
    }
    let streaming: Vec<&str> = leader_status["replication"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["state"] == "streaming")
        .filter_map(|r| r["application_name"].as_str())
        .collect();
    for m in up.iter().filter(|m| m.name != leader.name) {
        if get_status(m.rest(), "/replica")? != 200 {
            return Err(format!("{}: /replica is not 200", m.name));
        }
        if !streaming.contains(&m.name.as_str()) {
            return Err(format!(
                "{} not streaming from {} ({streaming:?})",
                m.name, leader.name
            ));
        }
    }
    if synchronous && up.len() > 1 {
        let sync_standbys: Vec<&str> = view
            .iter()
            .filter(|s| s.role == "sync_standby")
            .map(|s| s.name.as_str())
            .collect();
        let sync_replication = leader_status["replication"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["sync_state"] == "sync")
            .filter_map(|r| r["application_name"].as_str())
            .any(|name| sync_standbys.contains(&name));
        if !sync_replication {
            return Err(format!(
                "no synchronous standby yet (/cluster sync_standby {sync_standbys:?})"
            ));
        }
    }
    probe_write(leader)?;
    Ok(leader.name.clone())
}

/// `GET /cluster` from the member whose REST API is at `rest`.
pub fn cluster(rest: SocketAddr) -> Option<Vec<MemberStatus>> {
    let r = http::get_at(rest, "/cluster", HTTP_LIMIT).ok()?;
    if r.status != 200 {
        return None;
    }
    let json = r.json()?;
    let members = json["members"].as_array()?;
    Some(
        members
            .iter()
            .map(|m| MemberStatus {
                name: m["name"].as_str().unwrap_or_default().to_string(),
                role: m["role"].as_str().unwrap_or_default().to_string(),
                state: m["state"].as_str().unwrap_or_default().to_string(),
                timeline: m["timeline"].as_u64(),
                lag: m["lag"].as_u64(),
            })
            .collect(),
    )
}

fn get_status(rest: SocketAddr, path: &str) -> Result<u16, String> {
    http::get_at(rest, path, HTTP_LIMIT)
        .map(|r| r.status)
        .map_err(|e| format!("GET {rest}{path}: {e}"))
}

fn get_json(rest: SocketAddr, path: &str) -> Result<Value, String> {
    let r = http::get_at(rest, path, HTTP_LIMIT).map_err(|e| format!("GET {rest}{path}: {e}"))?;
    r.json()
        .ok_or_else(|| format!("GET {rest}{path}: {} {:?}", r.status, r.body))
}

pub fn etcd_healthy(etcd: SocketAddr) -> bool {
    http::get_at(etcd, "/health", HTTP_LIMIT)
        .ok()
        .and_then(|r| r.json())
        .is_some_and(|j| j["health"] == "true")
}

/// A real write, over TCP with SCRAM like an application: `/primary` 200
/// alone also answers while the leader is still read-only.
pub fn probe_write(m: &MemberInfo) -> Result<(), String> {
    let mut cmd = psql_command(m.pg_port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB);
    // A later -h wins over psql_command's 127.0.0.1.
    cmd.args(["-h", &m.host]);
    cmd.arg("-c").arg(format!(
        "INSERT INTO probe (node) VALUES ('{}') RETURNING inet_server_port()",
        m.name
    ));
    let out = run_bounded(&mut cmd, WRITE_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.trim() == m.pg_port.to_string() {
        Ok(())
    } else {
        Err(format!(
            "write on {} failed: {}{}",
            m.name,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
