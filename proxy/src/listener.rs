//! Accepting clients: one loop per listen address, each client in its own
//! task, `max_client_conn` enforced with a permit moved into that task.
//! The task runs what the login ends in: a pool client's session, or the
//! admin console (chosen here, above both).

use crate::app::App;
use crate::client::{self, Console};
use crate::protocol::backend::{self, Severity};
use bytes::BytesMut;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
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
                tracker.spawn(serve(app.clone(), stream, peer, permit));
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

/// Serves one client connection to the end; `slot` (its max_client_conn
/// permit) is released when it leaves.
///
/// A plain fn returning an async block, not an async fn: an async fn keeps
/// each argument twice (captured and as its local), and this future is
/// what every idle client costs.
#[allow(clippy::manual_async_fn)]
pub fn serve(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    async move {
        // Boxed: startup and login are large and finished once; the task
        // that lives on while the client idles is only the session loop.
        let _slot = slot;
        let login = Box::pin(client::establish(app, stream, peer, console_session));
        let Some(mut session) = login.await else {
            return;
        };
        session.run().await;
    }
}

/// The admin console for a user who logged in to it. Boxed: inlined, the
/// console's state made every client's login allocation 1 KiB larger.
fn console_session(console: Box<Console>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let Console {
            app,
            stream,
            buf,
            access,
            registration,
        } = *console;
        crate::admin::serve(app, stream, buf, access, &registration).await;
    })
}

#[cfg(test)]
mod size_tests {
    /// Every connected client is one task whose size is its future's. Cold
    /// paths (login, errors, opening servers, the console) are boxed so
    /// that an idle client stays small; this fails if one gets inlined
    /// again. tokio aligns a task's cell to 128 bytes, so memory moves in
    /// 128-byte steps: the release build's cell went from 768 to 640 bytes
    /// (massif) when this future went from 664 to 528 bytes (a debug
    /// build).
    const MAX_TASK_BYTES: usize = 560;

    #[tokio::test]
    async fn client_task_stays_small() {
        let app = crate::app::App::new(Default::default(), Default::default());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let peer = s.local_addr().unwrap();
        let slot = std::sync::Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        let f = super::serve(app, s, peer, slot);
        let size = std::mem::size_of_val(&f);
        println!("client task future: {size} bytes");
        assert!(
            size <= MAX_TASK_BYTES,
            "client task future grew to {size} bytes"
        );
    }
}
