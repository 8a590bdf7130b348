//! What one pool needs from the config, resolved for its (database, user).

use super::Route;
use crate::config::PoolMode;
use crate::server::{ServerConn, ServerTarget};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct PoolSettings {
    pub target: ServerTarget,
    pub mode: PoolMode,
    pub size: u32,
    pub min_size: u32,
    pub reserve_size: u32,
    pub reserve_timeout: Duration,
    pub query_wait_timeout: Duration,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    /// Run before a server connection goes back to the pool, if any.
    pub reset_query: Option<String>,
    /// Run on an idle connection before it is lent again, if any.
    pub check: Option<Arc<ServerCheck>>,
    /// On a cluster: `target`'s host and port are replaced by the member
    /// of this role at each connect.
    pub route: Option<Arc<Route>>,
}

/// `server_check_query`: a connection released longer than `delay` ago
/// must answer `query` within `timeout` before a client gets it. A server
/// may have gone since (restarted, hung, its host lost) without pgwolf
/// seeing it, and a client's request sent to it would only fail, or worse
/// hang until a timeout.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerCheck {
    pub query: String,
    pub delay: Duration,
    pub timeout: Duration,
}

impl ServerCheck {
    /// Whether `conn` must be checked before it is lent at `now`.
    pub fn due(&self, conn: &ServerConn, now: Instant) -> bool {
        now.saturating_duration_since(conn.last_used) >= self.delay
    }
}

impl PoolSettings {
    /// Past `server_lifetime` at `now` (the caller's clock reading, shared
    /// with what else it times).
    pub fn expired(&self, conn: &ServerConn, now: Instant) -> bool {
        outlived(self.lifetime, conn, now)
    }

    /// Same server and login: existing connections stay valid.
    pub fn same_target(&self, other: &PoolSettings) -> bool {
        let (a, b) = (&self.target, &other.target);
        a.host == b.host
            && a.port == b.port
            && a.dbname == b.dbname
            && a.user == b.user
            && a.secret == b.secret
            && a.startup == b.startup
            && match (&self.route, &other.route) {
                (None, None) => true,
                (Some(x), Some(y)) => x.same(y),
                _ => false,
            }
    }
}

/// Past `lifetime` (zero: forever) at `now`.
pub fn outlived(lifetime: Duration, conn: &ServerConn, now: Instant) -> bool {
    !lifetime.is_zero() && now - conn.created >= lifetime
}
