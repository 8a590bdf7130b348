//! Accepting clients: one loop per listen address, each client in its own
//! task, `max_client_conn` enforced with a permit moved into that task.

use crate::app::App;
use crate::client;
use crate::protocol::backend::{self, Severity};
use bytes::BytesMut;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Client connection slots, resizable on reload.
pub struct ClientSlots {
    pub sem: Arc<Semaphore>,
    size: AtomicU32,
}

impl ClientSlots {
    pub fn new(n: u32) -> Self {
        ClientSlots {
            sem: Arc::new(Semaphore::new(n as usize)),
            size: AtomicU32::new(n),
        }
    }

    pub fn resize(&self, n: u32) {
        crate::pool::resize(&self.sem, &self.size, n);
    }
}

/// Binds every configured address; fails on the first that cannot be bound.
pub async fn bind(addrs: &[String]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        let l = TcpListener::bind(a.as_str())
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))?;
        tracing::info!(addr = %l.local_addr()?, "listening");
        out.push(l);
    }
    Ok(out)
}

/// Accepts until shutdown; clients are spawned on `tracker` so shutdown
/// can wait for them.
pub async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    slots: Arc<ClientSlots>,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = app.shutdown.cancelled() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.sem.clone().try_acquire_owned() {
            Ok(permit) => {
                tracker.spawn(client::serve(app.clone(), stream, peer, permit));
            }
            Err(_) => {
                tracing::warn!(%peer, "max_client_conn reached, refusing client");
                tokio::spawn(async move {
                    let mut out = BytesMut::new();
                    backend::error_response(
                        &mut out,
                        Severity::Fatal,
                        "53300",
                        "no more connections allowed (max_client_conn)",
                    );
                    let _ = stream.write_all(&out).await;
                });
            }
        }
    }
}
