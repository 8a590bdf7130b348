//! Cancel keys: each client gets a proxy-issued BackendKeyData; a
//! CancelRequest carrying it is sent on to the server that client is using
//! right now, with that server's own key.

use crate::protocol::startup::encode_cancel;
use bytes::BytesMut;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where a cancel for a client goes while it holds a server connection.
#[derive(Debug, Clone, Copy)]
pub struct CancelTarget {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

/// One client's slot. The std Mutex is held only to copy a small value,
/// never across `.await`.
#[derive(Default)]
pub struct CancelSlot(Mutex<Option<CancelTarget>>);

impl CancelSlot {
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.0.lock().unwrap() = target;
    }

    fn get(&self) -> Option<CancelTarget> {
        *self.0.lock().unwrap()
    }
}

#[derive(Default)]
pub struct CancelRegistry {
    map: DashMap<(i32, i32), Arc<CancelSlot>>,
    next_pid: AtomicI32,
}

/// Removes the client's key when the client goes away.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub key: (i32, i32),
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.map.remove(&self.key);
    }
}

impl CancelRegistry {
    /// A fresh (pid, secret) for a client. The pid is unique among live
    /// clients; the secret is random so keys cannot be guessed.
    pub fn register(self: &Arc<Self>) -> Registration {
        let slot = Arc::new(CancelSlot::default());
        loop {
            let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            let key = (pid.max(1), rand::random::<i32>());
            if let dashmap::Entry::Vacant(v) = self.map.entry(key) {
                v.insert(slot.clone());
                return Registration {
                    registry: self.clone(),
                    key,
                    slot,
                };
            }
        }
    }

    /// Forwards a cancel; unknown keys and idle clients are ignored, as
    /// PostgreSQL ignores them (the requester learns nothing).
    pub async fn cancel(&self, pid: i32, secret: i32, timeout: Duration) {
        let Some(target) = self.map.get(&(pid, secret)).and_then(|s| s.get()) else {
            tracing::debug!(pid, "cancel request for no running query");
            return;
        };
        let mut pkt = BytesMut::with_capacity(16);
        encode_cancel(target.pid, target.secret, &mut pkt);
        let sent = tokio::time::timeout(timeout, async {
            let mut s = TcpStream::connect(target.addr).await?;
            s.write_all(&pkt).await?;
            s.shutdown().await
        })
        .await;
        match sent {
            Ok(Ok(())) => tracing::info!(pid, server = %target.addr, "cancel request forwarded"),
            Ok(Err(e)) => {
                tracing::warn!(pid, server = %target.addr, error = %e, "cancel request failed")
            }
            Err(_) => tracing::warn!(pid, server = %target.addr, "cancel request timed out"),
        }
    }
}
