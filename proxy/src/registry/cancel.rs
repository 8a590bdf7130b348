//! Cancel requests: each client gets a proxy-issued BackendKeyData (see
//! `registry/mod.rs`); a CancelRequest carrying it is sent on to the server
//! that client is using right now, with that server's own key.

use super::{ClientRegistry, ServerLink};
use crate::net::Endpoint;
use crate::protocol::startup::encode_cancel;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

impl ClientRegistry {
    /// Forwards a cancel; unknown keys and idle clients are ignored, as
    /// PostgreSQL ignores them (the requester learns nothing).
    pub async fn cancel(&self, pid: i32, secret: i32, timeout: Duration) {
        let Some(target) = self.get((pid, secret)).and_then(|s| s.activity().server) else {
            tracing::debug!(pid, "cancel request for no running query");
            return;
        };
        cancel_on_server(target, timeout).await;
    }
}

/// Sends `target` a CancelRequest for its query, within `timeout`; the
/// outcome is logged (the server answers a cancel with nothing).
pub async fn cancel_on_server(target: std::sync::Arc<ServerLink>, timeout: Duration) {
    let pid = target.pid;
    let mut pkt = BytesMut::with_capacity(16);
    encode_cancel(target.pid, target.secret, &mut pkt);
    let sent = tokio::time::timeout(timeout, async {
        match &target.addr {
            Endpoint::Tcp(addr) => send(TcpStream::connect(addr).await?, &pkt).await,
            Endpoint::Unix { path, .. } => send(UnixStream::connect(path).await?, &pkt).await,
        }
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

async fn send(mut s: impl AsyncWrite + Unpin, pkt: &[u8]) -> std::io::Result<()> {
    s.write_all(pkt).await?;
    s.shutdown().await
}
