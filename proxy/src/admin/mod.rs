//! The admin console: the virtual database `pgwolf` (or `pgbouncer`, for
//! existing tooling), for users in `admin_users` (every command) or
//! `stats_users` (SHOW only), in the simple query protocol.
//!
//! SHOW POOLS, DATABASES, USERS, LISTS, STATS, STATS_TOTALS,
//! STATS_AVERAGES, CONFIG, VERSION, STATE (PgBouncer's columns, see
//! `show.rs`), CLIENTS and SERVERS (`conns.rs`), SHOW TOPOLOGY and SHOW
//! PREPARED; PAUSE, RESUME, RECONNECT, KILL, KILL_CLIENT, WAIT_CLOSE,
//! RELOAD, SET, SHUTDOWN and SWITCHOVER.

mod conns;
mod process;
mod procfs;
mod rows;
pub mod show;

use crate::app::App;
use crate::client::Access;
use crate::control;
use crate::protocol::backend::{self, Severity};
use crate::protocol::frame::split_message;
use crate::protocol::frontend;
use crate::tls::Stream;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Console commands are short; anything longer is a mistake.
const MAX_MESSAGE: u32 = 64 * 1024;

/// After authentication: the welcome, then one command per Query until
/// the client leaves.
pub async fn serve(
    app: Arc<App>,
    mut stream: Stream,
    mut buf: BytesMut,
    access: Access,
    me: &crate::registry::Registration,
) {
    let key = me.key;
    let mut out = BytesMut::with_capacity(256);
    backend::auth_ok(&mut out);
    for (k, v) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", "pgwolf"),
    ] {
        backend::parameter_status(&mut out, k, v);
    }
    backend::backend_key_data(&mut out, key.0, key.1);
    backend::ready_for_query(&mut out, backend::TX_IDLE);
    if !send(&mut stream, &out).await {
        return;
    }
    loop {
        let (tag, body) = match split_message(&mut buf, MAX_MESSAGE) {
            Ok(Some(m)) => m,
            Ok(None) => {
                let read = tokio::select! {
                    r = stream.read_buf(&mut buf) => r,
                    // KILL_CLIENT of this console, or shutdown.
                    () = me.slot.kill.cancelled() => return,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
            Err(e) => {
                let mut out = BytesMut::new();
                backend::error_response(&mut out, Severity::Fatal, "08P01", &e.to_string());
                send(&mut stream, &out).await;
                return;
            }
        };
        let mut out = BytesMut::new();
        match tag {
            frontend::QUERY => {
                let sql = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body));
                if let Err((code, message)) = run(&app, access, &sql, &mut out).await {
                    out.clear();
                    backend::error_response(&mut out, Severity::Error, code, &message);
                }
                backend::ready_for_query(&mut out, backend::TX_IDLE);
            }
            frontend::TERMINATE => return,
            _ => {
                backend::error_response(
                    &mut out,
                    Severity::Fatal,
                    "08P01",
                    "the admin console speaks the simple query protocol only",
                );
                send(&mut stream, &out).await;
                return;
            }
        }
        if !send(&mut stream, &out).await {
            return;
        }
    }
}

/// Whole answer out, through TLS too; false when the client is gone.
async fn send(stream: &mut Stream, out: &[u8]) -> bool {
    stream.write_all(out).await.is_ok() && stream.flush().await.is_ok()
}

type Failure = (&'static str, String);

async fn run(app: &App, access: Access, sql: &str, out: &mut BytesMut) -> Result<(), Failure> {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    // Denied by default and checked once, before dispatch, so that no
    // command can forget it: only SHOW is open to stats_users (PgBouncer's
    // CVE-2026-6667: KILL_CLIENT was open to them). A stats user is told
    // a command is not theirs only when it is one.
    if access != Access::Admin && !read_only(&upper) {
        if upper.first().is_some_and(|w| CONTROL_COMMANDS.contains(w)) {
            return Err((
                "42501",
                "admin console: only admin_users may run this command".to_string(),
            ));
        }
        return Err(unknown(sql));
    }
    match upper.as_slice() {
        ["SHOW", "TOPOLOGY"] => show_topology(app, out),
        ["SHOW", "POOLS"] => show::pools(app, out),
        ["SHOW", "DATABASES"] => show::databases(app, out),
        ["SHOW", "USERS"] => show::users(app, out),
        ["SHOW", "LISTS"] => show::lists(app, out),
        ["SHOW", "CONFIG"] => show::config(app, out),
        ["SHOW", "VERSION"] => show::version(out),
        ["SHOW", "STATE"] => show::state(app, out),
        ["SHOW", "PREPARED"] => show::prepared(app, out),
        ["SHOW", "CLIENTS"] => conns::clients(app, out),
        ["SHOW", "SERVERS"] => conns::servers(app, out),
        ["SHOW", "DNS_HOSTS"] => process::dns_hosts(app, out),
        ["SHOW", "DNS_ZONES"] => process::dns_zones(out),
        ["SHOW", "FDS"] => process::fds(app, out),
        ["SHOW", "SOCKETS"] => process::sockets(app, out),
        ["SHOW", "MEM"] => process::mem(out),
        ["SHOW", which @ ("STATS" | "STATS_TOTALS" | "STATS_AVERAGES")] => {
            let history = app.history.lock().unwrap();
            show::stats(app, &history, which, out)
        }
        ["PAUSE", rest @ ..] if rest.len() <= 1 => {
            let db = words.get(1).copied();
            pause(app, db).await?;
            rows::command_complete(out, "PAUSE");
        }
        ["RESUME", rest @ ..] if rest.len() <= 1 => {
            let n = control::resume(app, words.get(1).copied());
            if n == 0 && words.len() > 1 {
                return Err(("3D000", format!("no pool of database \"{}\"", words[1])));
            }
            rows::command_complete(out, "RESUME");
        }
        ["RECONNECT", rest @ ..] if rest.len() <= 1 => {
            let db = words.get(1).copied();
            let pools = control::pools_of(app, db);
            if pools.is_empty() && db.is_some() {
                return Err(("3D000", format!("no pool of database \"{}\"", words[1])));
            }
            pools.iter().for_each(crate::pool::Pool::reconnect);
            rows::command_complete(out, "RECONNECT");
        }
        ["KILL", rest @ ..] if rest.len() <= 1 => {
            conns::kill(app, words.get(1).copied()).map_err(|e| ("3D000", e))?;
            rows::command_complete(out, "KILL");
        }
        ["KILL_CLIENT", _] => {
            conns::kill_client(app, words[1])?;
            rows::command_complete(out, "KILL_CLIENT");
        }
        ["WAIT_CLOSE", rest @ ..] if rest.len() <= 1 => {
            let db = words.get(1).copied();
            if db.is_some() && control::pools_of(app, db).is_empty() {
                return Err(("3D000", format!("no pool of database \"{}\"", words[1])));
            }
            wait_until("WAIT_CLOSE", app, || match conns::close_needed(app, db) {
                0 => None,
                n => Some(format!("{n} server connection(s) still to close")),
            })
            .await?;
            rows::command_complete(out, "WAIT_CLOSE");
        }
        ["RELOAD"] => {
            app.request_reload().await.map_err(|e| ("F0000", e))?;
            rows::command_complete(out, "RELOAD");
        }
        ["SET", ..] => {
            set(app, sql.trim().trim_end_matches(';'))?;
            rows::command_complete(out, "SET");
        }
        ["SHUTDOWN"] => {
            tracing::info!("SHUTDOWN from the admin console");
            app.begin_shutdown();
            rows::command_complete(out, "SHUTDOWN");
        }
        ["SWITCHOVER", ..] => {
            switchover(app, &words[1..], &upper[1..], out).await?;
        }
        [] => rows::command_complete(out, ""),
        _ => return Err(unknown(sql)),
    }
    Ok(())
}

/// The first words of the commands only admin_users may run.
const CONTROL_COMMANDS: [&str; 10] = [
    "PAUSE",
    "RESUME",
    "RECONNECT",
    "KILL",
    "KILL_CLIENT",
    "WAIT_CLOSE",
    "RELOAD",
    "SET",
    "SHUTDOWN",
    "SWITCHOVER",
];

fn unknown(sql: &str) -> Failure {
    (
        "42601",
        format!(
            "unknown admin command `{}`; this console knows SHOW POOLS|CLIENTS|SERVERS|SOCKETS|DATABASES|USERS|LISTS|STATS|STATS_TOTALS|STATS_AVERAGES|CONFIG|VERSION|STATE|TOPOLOGY|PREPARED|DNS_HOSTS|DNS_ZONES|FDS|MEM, PAUSE [db], RESUME [db], RECONNECT [db], KILL [db], KILL_CLIENT id, WAIT_CLOSE [db], RELOAD, SET key = value, SHUTDOWN, SWITCHOVER [cluster] [TO member]",
            sql.trim()
        ),
    )
}

/// Commands that only read: what stats_users may run.
fn read_only(upper: &[&str]) -> bool {
    matches!(upper, [] | ["SHOW", ..])
}

/// `SET key = value` of a global setting: applied like a reload of the
/// running config with that one change, validated first.
fn set(app: &App, sql: &str) -> Result<(), Failure> {
    let bad = || ("42601", "usage: SET key = value".to_string());
    let rest = sql.get(3..).ok_or_else(bad)?;
    let (key, value) = rest.split_once('=').ok_or_else(bad)?;
    let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
    if show::RESTART_ONLY.contains(&key.as_str()) {
        return Err(("55P02", format!("{key} takes effect on restart only")));
    }
    let cfg = app.config.load_full();
    let mut table = toml::Value::try_from(&*cfg).map_err(|e| ("XX000", e.to_string()))?;
    let known = table
        .as_table()
        .and_then(|t| t.get(&key))
        .is_some_and(|v| !v.is_table());
    if !known {
        return Err(("42704", format!("unknown setting `{key}`")));
    }
    // A TOML value (`20`, `true`, `\"30s\"`), or else the text as a string.
    let value = value.trim_matches('\'');
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    table[&key] = parsed;
    let new: crate::config::Config = table
        .try_into()
        .map_err(|e: toml::de::Error| ("22023", format!("{key}: {}", e.message())))?;
    crate::config::validate(&new).map_err(|e| ("22023", e.to_string()))?;
    let auth = (**app.auth.load()).clone();
    app.reload(new, auth);
    tracing::info!(key, "setting changed from the admin console");
    Ok(())
}

async fn pause(app: &App, db: Option<&str>) -> Result<(), Failure> {
    if control::pause(app, db) == 0 && db.is_some() {
        return Err((
            "3D000",
            format!("no pool of database \"{}\"", db.unwrap_or("")),
        ));
    }
    // As PgBouncer's, PAUSE returns once the paused pools' transactions
    // ended.
    wait_until("paused, but", app, || {
        match control::pools_of(app, db)
            .iter()
            .map(|p| p.active())
            .sum::<u32>()
        {
            0 => None,
            busy => Some(format!("{busy} transaction(s) still running")),
        }
    })
    .await
}

/// Polls `pending` until it says nothing is left, or `admin_wait_timeout`
/// passes: then the error says what `pending` last reported.
async fn wait_until(
    what: &str,
    app: &App,
    mut pending: impl FnMut() -> Option<String>,
) -> Result<(), Failure> {
    let limit = app.config.load().admin_wait_timeout;
    let deadline = (!limit.is_zero()).then(|| tokio::time::Instant::now() + limit);
    loop {
        let Some(left) = pending() else {
            return Ok(());
        };
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err((
                "57014",
                format!("{what}: {left} after admin_wait_timeout ({limit:?})"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn switchover(
    app: &App,
    words: &[&str],
    upper: &[&str],
    out: &mut BytesMut,
) -> Result<(), Failure> {
    let (cluster, candidate) = match upper {
        [] => (None, None),
        ["TO", _] => (None, Some(words[1])),
        [_] => (Some(words[0]), None),
        [_, "TO", _] => (Some(words[0]), Some(words[2])),
        _ => return Err(("42601", "usage: SWITCHOVER [cluster] [TO member]".into())),
    };
    let cluster =
        match cluster {
            Some(c) => c.to_string(),
            None => {
                let cfg = app.config.load();
                let mut names = cfg.clusters.keys();
                match (names.next(), names.next()) {
                    (Some(only), None) => only.clone(),
                    _ => return Err((
                        "42601",
                        "several clusters (or none) are configured: name one, SWITCHOVER cluster"
                            .into(),
                    )),
                }
            }
        };
    let old = app
        .cluster_named(&cluster)
        .and_then(|c| c.current().primary().map(|m| m.name.clone()));
    let new = control::switchover(
        app,
        &cluster,
        candidate,
        control::SwitchoverLimits::default(),
    )
    .await
    .map_err(|e| ("55000", e))?;
    rows::row_description(out, &["new_primary", "old_primary", "cluster"]);
    rows::data_row(out, &[Some(new), old, Some(cluster)]);
    rows::command_complete(out, "SWITCHOVER");
    Ok(())
}

fn show_topology(app: &App, out: &mut BytesMut) {
    rows::row_description(
        out,
        &[
            "cluster",
            "member",
            "host",
            "port",
            "role",
            "lag",
            "last_change",
            "error",
        ],
    );
    let mut n = 0;
    let names: Vec<String> = app.config.load().clusters.keys().cloned().collect();
    for c in names.iter().filter_map(|n| app.cluster_named(n)) {
        let t = c.current();
        for m in &t.members {
            rows::data_row(
                out,
                &[
                    Some(c.name.clone()),
                    Some(m.name.clone()),
                    Some(m.host.clone()),
                    Some(m.port.to_string()),
                    Some(m.role.as_str().to_string()),
                    m.lag.map(|l| l.to_string()),
                    t.changed_at.map(conns::timestamp),
                    t.error.clone(),
                ],
            );
            n += 1;
        }
    }
    rows::command_complete(out, &format!("SHOW {n}"));
}
