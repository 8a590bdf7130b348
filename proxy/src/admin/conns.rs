//! The console's view of single connections: SHOW CLIENTS and SHOW SERVERS
//! (PgBouncer 1.18's columns), and the commands that end them: KILL,
//! KILL_CLIENT and WAIT_CLOSE.
//!
//! There is no list of servers: idle ones are on their pools' idle stacks,
//! checked-out ones are known through the client holding them.

use super::rows::{self, INT4, TEXT};
use crate::app::App;
use crate::control;
use crate::net::Endpoint;
use crate::pool::Pool;
use crate::registry::{self, ClientSlot};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const COLUMNS: [(&str, u32); 18] = [
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
];

/// PgBouncer's timestamp format, e.g. `2026-12-02 13:37:38 UTC`.
pub(super) fn timestamp(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

fn wall(t: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(t.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// One row of SHOW CLIENTS or SHOW SERVERS.
struct Row {
    kind: char,
    user: String,
    db: String,
    state: &'static str,
    addr: Endpoint,
    local: Endpoint,
    connected: SystemTime,
    request: SystemTime,
    wait: Duration,
    close_needed: bool,
    ptr: String,
    link: String,
    remote_pid: i32,
    tls: String,
    application_name: String,
}

fn write(out: &mut BytesMut, rows_: &[Row]) {
    write_with(out, rows_, &[], |_| Vec::new());
}

/// The rows with `more` columns after PgBouncer's, filled by `extra`
/// (SHOW SOCKETS).
fn write_with(
    out: &mut BytesMut,
    rows_: &[Row],
    more: &[(&str, u32)],
    extra: impl Fn(&Row) -> Vec<Option<String>>,
) {
    let mut columns = COLUMNS.to_vec();
    columns.extend_from_slice(more);
    rows::typed_description(out, &columns);
    for r in rows_ {
        let s = |v: &dyn ToString| Some(v.to_string());
        let mut values = vec![
            s(&r.kind),
            s(&r.user),
            s(&r.db),
            s(&r.state),
            Some(r.addr.host_text()),
            s(&r.addr.port()),
            Some(r.local.host_text()),
            s(&r.local.port()),
            Some(timestamp(r.connected)),
            Some(timestamp(r.request)),
            s(&r.wait.as_secs()),
            s(&r.wait.subsec_micros()),
            s(&u8::from(r.close_needed)),
            s(&r.ptr),
            s(&r.link),
            s(&r.remote_pid),
            s(&r.tls),
            s(&r.application_name),
        ];
        values.extend(extra(r));
        rows::data_row(out, &values);
    }
    rows::command_complete(out, "SHOW");
}

pub fn clients(app: &App, out: &mut BytesMut) {
    write(out, &client_rows(app));
}

pub fn servers(app: &App, out: &mut BytesMut) {
    write(out, &server_rows(app));
}

/// SHOW SOCKETS: every client's and server's row with the kernel's view
/// of its socket: bytes received and not read yet, bytes written and not
/// sent or acknowledged yet (a peer that stopped reading), from
/// `queues(local, peer)`; NULL where the kernel has no such figure.
pub fn sockets(
    app: &App,
    out: &mut BytesMut,
    queues: impl Fn(&Endpoint, &Endpoint) -> Option<(u64, u64)>,
) {
    let mut list = client_rows(app);
    list.extend(server_rows(app));
    let more = [("recv_queue", rows::INT4), ("send_queue", rows::INT4)];
    write_with(out, &list, &more, |r| match queues(&r.local, &r.addr) {
        Some((recv, send)) => vec![Some(recv.to_string()), Some(send.to_string())],
        None => vec![None, None],
    });
}

/// Who each connection is for SHOW FDS: (pgwolf's end, the peer, 'C' or
/// 'S', user, database).
pub(super) fn owners(app: &App) -> Vec<(Endpoint, Endpoint, char, String, String)> {
    client_rows(app)
        .into_iter()
        .chain(server_rows(app))
        .map(|r| (r.local, r.addr, r.kind, r.user, r.db))
        .collect()
}

fn client_rows(app: &App) -> Vec<Row> {
    let mut list = Vec::new();
    for (pid, slot) in app.clients.logged_in() {
        let Some(info) = slot.info() else { continue };
        let a = slot.activity();
        let wait = match (a.waiting, a.request) {
            (true, Some(t)) => t.elapsed(),
            _ => Duration::ZERO,
        };
        list.push(Row {
            kind: 'C',
            user: info.user.clone(),
            db: info.db.clone(),
            state: if a.waiting { "waiting" } else { "active" },
            addr: info.peer.clone(),
            local: info.local.clone(),
            connected: info.connected,
            request: a.request.map_or(info.connected, wall),
            wait,
            close_needed: false,
            ptr: registry::client_ptr(pid),
            link: a.server.map(|s| s.ptr()).unwrap_or_default(),
            remote_pid: 0,
            tls: info.tls.clone(),
            application_name: info.application_name.clone(),
        });
    }
    list
}

fn server_rows(app: &App) -> Vec<Row> {
    let mut list = Vec::new();
    // Checked out: through the clients holding them.
    for (pid, slot) in app.clients.logged_in() {
        let (Some(info), Some(s)) = (slot.info(), slot.activity().server) else {
            continue;
        };
        let Some(pool) = &info.pool else { continue };
        list.push(Row {
            kind: 'S',
            user: pool.key().user.clone(),
            db: pool.key().db.clone(),
            state: "active",
            addr: s.addr.clone(),
            local: s.local.clone(),
            connected: wall(s.created),
            request: slot.activity().request.map_or(wall(s.created), wall),
            wait: Duration::ZERO,
            close_needed: s.generation != pool.generation(),
            ptr: s.ptr(),
            link: registry::client_ptr(pid),
            remote_pid: s.pid,
            tls: s.tls.to_string(),
            application_name: info.application_name.clone(),
        });
    }
    let mut pools = app.pools();
    pools.sort_by(|a, b| (&a.key().db, &a.key().user).cmp(&(&b.key().db, &b.key().user)));
    for pool in &pools {
        let generation = pool.generation();
        for c in pool.idle_servers() {
            list.push(Row {
                kind: 'S',
                user: pool.key().user.clone(),
                db: pool.key().db.clone(),
                state: "idle",
                addr: c.addr,
                local: c.local.clone(),
                connected: wall(c.created),
                request: wall(c.last_used),
                wait: Duration::ZERO,
                close_needed: c.generation != generation,
                ptr: registry::server_ptr(c.local.port(), c.pid),
                link: String::new(),
                remote_pid: c.pid,
                tls: c.tls.to_string(),
                application_name: String::new(),
            });
        }
    }
    list
}

/// Clients on a pool of `db` (every pool's when None); the console's own
/// are never among them.
fn clients_of(app: &App, db: Option<&str>) -> Vec<Arc<ClientSlot>> {
    app.clients
        .logged_in()
        .into_iter()
        .map(|(_, slot)| slot)
        .filter(|slot| {
            slot.info()
                .and_then(|i| i.pool.as_ref())
                .is_some_and(|p| db.is_none_or(|d| p.key().db == d))
        })
        .collect()
}

/// KILL [db]: as PgBouncer's, every client and server connection of the
/// database is dropped now, and the pools stay paused (new clients wait)
/// until RESUME. Returns how many clients were disconnected.
pub fn kill(app: &App, db: Option<&str>) -> Result<usize, String> {
    let pools = control::pools_of(app, db);
    if pools.is_empty() && db.is_some() {
        return Err(format!("no pool of database \"{}\"", db.unwrap_or("")));
    }
    pools.iter().for_each(Pool::pause);
    let victims = clients_of(app, db);
    victims.iter().for_each(|c| c.kill.cancel());
    // Checked-out connections are closed by their clients as they leave.
    pools.iter().for_each(Pool::reconnect);
    tracing::info!(
        db = db.unwrap_or("*"),
        clients = victims.len(),
        "KILL from the admin console"
    );
    Ok(victims.len())
}

/// KILL_CLIENT id: one client (its SHOW CLIENTS `ptr`, or the pid in it)
/// is disconnected now, with the server it holds.
pub fn kill_client(app: &App, id: &str) -> Result<(), (&'static str, String)> {
    let pid = registry::parse_client_id(id).ok_or_else(|| {
        (
            "22023",
            format!("KILL_CLIENT: `{id}` is not a client id (SHOW CLIENTS ptr)"),
        )
    })?;
    let slot = app
        .clients
        .by_pid(pid)
        .filter(|s| s.info().is_some())
        .ok_or_else(|| ("42704", format!("KILL_CLIENT: no client {id}")))?;
    slot.kill.cancel();
    tracing::info!(client = %id, "KILL_CLIENT from the admin console");
    Ok(())
}

/// Server connections of `db`'s pools made for an older generation (a
/// RECONNECT, a RELOAD that moved the server, a failover), still open.
pub fn close_needed(app: &App, db: Option<&str>) -> usize {
    let pools = control::pools_of(app, db);
    let idle: usize = pools
        .iter()
        .map(|p| {
            let g = p.generation();
            p.idle_servers()
                .iter()
                .filter(|c| c.generation != g)
                .count()
        })
        .sum();
    let held = clients_of(app, db)
        .iter()
        .filter(|slot| {
            let pool = slot.info().and_then(|i| i.pool.as_ref());
            match (pool, slot.activity().server) {
                (Some(p), Some(s)) => s.generation != p.generation(),
                _ => false,
            }
        })
        .count();
    idle + held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_pgbouncer_s() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_219_858);
        assert_eq!(timestamp(t), "2026-12-02 13:57:38 UTC");
    }
}
