//! Every connected client, keyed by the BackendKeyData pgwolf issued it:
//! cancel requests find the server a client is using through it, and the
//! admin console lists clients and servers (SHOW CLIENTS/SERVERS) and
//! disconnects them (KILL, KILL_CLIENT) through it.

pub mod cancel;
pub mod kill;

use crate::net::Endpoint;
use crate::pool::Pool;
use dashmap::DashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};
use tokio_util::sync::CancellationToken;

pub use crate::server::{server_ptr, ServerLink};

/// What a client is doing, changed a few times per transaction under a
/// mutex that is held only to copy it.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// The server connection it holds now.
    pub server: Option<Arc<ServerLink>>,
    /// Waiting for a server connection since `request`.
    pub waiting: bool,
    /// When its latest transaction started.
    pub request: Option<Instant>,
}

/// Set once the client has logged in.
pub struct ClientInfo {
    /// None on the admin console.
    pub pool: Option<Pool>,
    pub user: String,
    pub db: String,
    pub peer: Endpoint,
    pub local: Endpoint,
    pub connected: SystemTime,
    pub application_name: String,
    /// Protocol and cipher suite, "" for plain (SHOW CLIENTS `tls`).
    pub tls: String,
}

pub struct ClientSlot {
    activity: Mutex<Activity>,
    info: OnceLock<Box<ClientInfo>>,
    /// Fired by KILL / KILL_CLIENT, and by shutdown ([`ClientRegistry::kill_all`]).
    pub kill: kill::Kill,
}

impl ClientSlot {
    /// The client got `server` at `since`: cancel requests go there.
    pub fn set(&self, server: Arc<ServerLink>, since: Instant) {
        let mut a = self.activity.lock().unwrap();
        a.server = Some(server);
        a.waiting = false;
        a.request = Some(since);
    }

    /// The client's transaction is over; it holds no server.
    pub fn clear(&self) {
        self.activity.lock().unwrap().server = None;
    }

    /// No server was free: the client waits from `now`.
    pub fn waiting_since(&self, now: Instant) {
        let mut a = self.activity.lock().unwrap();
        a.waiting = true;
        a.request = Some(now);
    }

    /// The wait ended without a server (an error).
    pub fn stop_waiting(&self) {
        self.activity.lock().unwrap().waiting = false;
    }

    pub fn activity(&self) -> Activity {
        self.activity.lock().unwrap().clone()
    }

    pub fn logged_in(&self, info: ClientInfo) {
        let _ = self.info.set(Box::new(info));
    }

    pub fn info(&self) -> Option<&ClientInfo> {
        self.info.get().map(|b| &**b)
    }
}

#[derive(Default)]
pub struct ClientRegistry {
    map: DashMap<(i32, i32), Arc<ClientSlot>>,
    next_pid: AtomicI32,
}

/// Removes the client's key when the client goes away.
pub struct Registration {
    registry: Arc<ClientRegistry>,
    pub key: (i32, i32),
    pub slot: Arc<ClientSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.map.remove(&self.key);
    }
}

impl ClientRegistry {
    /// A fresh (pid, secret) for a client. The pid is unique among live
    /// clients; the secret is random so keys cannot be guessed. `shutdown`
    /// is the process's: a client registered once it has fired starts
    /// killed. The slot is in the map before `shutdown` is read and
    /// [`Self::kill_all`] runs after it fired, so no client misses both.
    pub fn register(self: &Arc<Self>, shutdown: &CancellationToken) -> Registration {
        let slot = Arc::new(ClientSlot {
            activity: Mutex::default(),
            info: OnceLock::new(),
            kill: Default::default(),
        });
        loop {
            let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            if pid == 0 {
                continue;
            }
            let key = (pid, rand::random::<i32>());
            if let dashmap::Entry::Vacant(v) = self.map.entry(key) {
                v.insert(slot.clone());
                if shutdown.is_cancelled() {
                    slot.kill.cancel();
                }
                return Registration {
                    registry: self.clone(),
                    key,
                    slot,
                };
            }
        }
    }

    /// Retires the server connections older than `generation` that clients
    /// of `pool` hold to the members `lost` names (host, port): each
    /// such client's transaction ends now (see
    /// [`kill::Kill::retire_below`]). Clients holding a newer one, or
    /// none, are untouched.
    pub fn retire(
        &self,
        pool: &crate::pool::PoolKey,
        generation: u64,
        lost: &[(String, u16)],
    ) -> usize {
        let mut n = 0;
        for e in self.map.iter() {
            let slot = e.value();
            let of_pool = slot
                .info()
                .and_then(|i| i.pool.as_ref())
                .is_some_and(|p| p.key() == pool);
            let hit = of_pool
                && slot
                    .activity()
                    .server
                    .is_some_and(|s| lost.iter().any(|m| names(m, &s.addr)));
            if hit {
                slot.kill.retire_below(generation);
                n += 1;
            }
        }
        n
    }

    /// Fires every client's kill switch (shutdown).
    pub fn kill_all(&self) {
        self.map.iter().for_each(|e| e.value().kill.cancel());
    }

    pub fn get(&self, key: (i32, i32)) -> Option<Arc<ClientSlot>> {
        self.map.get(&key).map(|s| s.clone())
    }

    /// The client whose pid (SHOW CLIENTS `ptr`) is `pid`.
    pub fn by_pid(&self, pid: i32) -> Option<Arc<ClientSlot>> {
        self.map
            .iter()
            .find(|e| e.key().0 == pid)
            .map(|e| e.value().clone())
    }

    /// Every client that has logged in, with its pid, in pid order.
    pub fn logged_in(&self) -> Vec<(i32, Arc<ClientSlot>)> {
        let mut all: Vec<_> = self
            .map
            .iter()
            .filter(|e| e.value().info().is_some())
            .map(|e| (e.key().0, e.value().clone()))
            .collect();
        all.sort_by_key(|(pid, _)| *pid);
        all
    }
}

/// Whether member (host, port) is `addr`. A host name is not resolved
/// here: such a member's connections are left to keepalive.
fn names(member: &(String, u16), addr: &Endpoint) -> bool {
    member.1 == addr.port() && member.0.parse::<std::net::IpAddr>().ok() == addr.ip()
}

/// SHOW CLIENTS `ptr` of the client with `pid`.
pub fn client_ptr(pid: i32) -> String {
    format!("0x{pid:x}")
}

/// Reads a SHOW CLIENTS `ptr` (`0x2a`) or a plain pid (`42`).
pub fn parse_client_id(id: &str) -> Option<i32> {
    match id.strip_prefix("0x").or_else(|| id.strip_prefix("0X")) {
        Some(hex) => i32::from_str_radix(hex, 16).ok(),
        None => id.parse().ok(),
    }
    .filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_read_back() {
        assert_eq!(parse_client_id(&client_ptr(42)), Some(42));
        assert_eq!(parse_client_id("42"), Some(42));
        assert_eq!(parse_client_id("0X2A"), Some(42));
        assert_eq!(parse_client_id("-1"), None);
        assert_eq!(parse_client_id("0xzz"), None);
    }

    #[test]
    fn server_ptrs_differ_by_port_and_pid() {
        assert_eq!(server_ptr(1, 2), "0x100000002");
        assert_ne!(server_ptr(1, 2), server_ptr(2, 1));
    }

    #[tokio::test]
    async fn shutdown_kills_every_client_and_kill_only_one() {
        let reg = Arc::new(ClientRegistry::default());
        let shutdown = CancellationToken::new();
        let (a, b) = (reg.register(&shutdown), reg.register(&shutdown));
        a.slot.kill.cancel();
        assert!(!b.slot.kill.is_cancelled());
        assert!(!shutdown.is_cancelled());
        shutdown.cancel();
        reg.kill_all();
        assert!(b.slot.kill.is_cancelled());
        let late = reg.register(&shutdown);
        assert!(late.slot.kill.is_cancelled());
        let pid = b.key.0;
        assert!(reg.by_pid(pid).is_some());
        drop(b);
        assert!(reg.by_pid(pid).is_none());
    }
}
