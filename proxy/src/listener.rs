//! Accepting clients: one loop per listen address, each client in its own
//! task, `max_client_conn` enforced with a permit moved into that task.
//! The task runs what the login ends in: a pool client's session, or the
//! admin console (chosen here, above both).

use crate::app::App;
use crate::client::{self, Console};
use crate::config::Config;
use crate::net::{Endpoint, Socket};
use crate::protocol::backend::{self, Severity};
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
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

/// A bound listen address: TCP, or the Unix socket in `unix_socket_dir`.
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// What SHOW CLIENTS shows for its clients; also removes the
        /// socket file when the listener goes (shutdown).
        file: SocketFile,
    },
}

/// The socket file, unlinked on drop so a restart finds no stale one.
pub struct SocketFile(Endpoint);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Endpoint::Unix { path, .. } = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Listener {
    async fn accept(&self) -> std::io::Result<(Socket, Endpoint)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Socket::Tcp(s), Endpoint::Tcp(peer)))
            }
            Listener::Unix { listener, file } => {
                let (s, _) = listener.accept().await?;
                Ok((Socket::Unix(s), file.0.clone()))
            }
        }
    }
}

/// Binds every `listen` address, then the Unix socket when
/// `unix_socket_dir` is set; fails on the first that cannot be bound.
pub async fn bind(cfg: &Config) -> std::io::Result<Vec<Listener>> {
    let mut out = Vec::with_capacity(cfg.listen.len() + 1);
    let mut first_port = None;
    for a in &cfg.listen {
        let l = TcpListener::bind(a.as_str())
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {a}: {e}")))?;
        tracing::info!(addr = %l.local_addr()?, "listening");
        first_port = first_port.or(Some(l.local_addr()?.port()));
        out.push(Listener::Tcp(l));
    }
    if !cfg.unix_socket_dir.is_empty() {
        // Validation made sure one of the two is there.
        let port = match cfg.unix_socket_port {
            0 => first_port.unwrap_or_default(),
            p => p,
        };
        out.push(bind_unix(cfg, port)?);
    }
    Ok(out)
}

/// `<unix_socket_dir>/.s.PGSQL.<port>` with `unix_socket_mode` and
/// `unix_socket_group`. A socket file nobody answers on is a previous
/// run's and is replaced; one that answers is another process's.
fn bind_unix(cfg: &Config, port: u16) -> std::io::Result<Listener> {
    use std::os::unix::fs::PermissionsExt;
    let path = crate::net::socket_path(&cfg.unix_socket_dir, port);
    let fail = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    };
    if std::fs::symlink_metadata(&path).is_ok() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another process is listening on it",
            )));
        }
        std::fs::remove_file(&path).map_err(fail)?;
    }
    let listener = UnixListener::bind(&path).map_err(fail)?;
    // Owned from here: an error below removes the file again.
    let file = SocketFile(Endpoint::unix(path.clone(), port));
    let mode = crate::config::parse_socket_mode(&cfg.unix_socket_mode)
        .map_err(|e| fail(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    if !cfg.unix_socket_group.is_empty() {
        let group = nix::unistd::Group::from_name(&cfg.unix_socket_group)
            .map_err(std::io::Error::from)
            .map_err(fail)?
            .ok_or_else(|| {
                fail(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no group named {}", cfg.unix_socket_group),
                ))
            })?;
        std::os::unix::fs::chown(&path, None, Some(group.gid.as_raw())).map_err(fail)?;
    }
    tracing::info!(socket = %path.display(), "listening");
    Ok(Listener::Unix { listener, file })
}

/// Accepts until shutdown; clients are spawned on `tracker` so shutdown
/// can wait for them.
pub async fn accept_loop(
    app: Arc<App>,
    listener: Listener,
    slots: Arc<ClientSlots>,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = app.shutdown.cancelled() => return,
        };
        let (socket, peer) = match accepted {
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
                tracker.spawn(serve(app.clone(), socket, peer, permit));
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
                    let _ = match socket {
                        Socket::Tcp(mut s) => s.write_all(&out).await,
                        Socket::Unix(mut s) => s.write_all(&out).await,
                    };
                });
            }
        }
    }
}

/// Serves one client connection to the end; `slot` (its max_client_conn
/// permit) is released when it leaves.
///
/// A plain fn returning an async block, not an async fn: what an async
/// block captures stays in its future for good, and this future is what
/// every idle client costs. So the login is boxed before the block is
/// made (startup and login are large and finished once; the socket and
/// peer go with them), and the block captures a pointer and the permit.
#[allow(clippy::manual_async_fn)]
pub fn serve(
    app: Arc<App>,
    socket: Socket,
    peer: Endpoint,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    let login = Box::pin(client::establish(app, socket, peer, console_session));
    async move {
        let _slot = slot;
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
        let peer = crate::net::Endpoint::Tcp(s.local_addr().unwrap());
        let s = crate::net::Socket::Tcp(s);
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

#[cfg(test)]
mod socket_tests {
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config {
            unix_socket_dir: dir.path().display().to_string(),
            unix_socket_mode: "0660".into(),
            ..Default::default()
        };
        let path = dir.path().join(".s.PGSQL.7001");
        // A killed run's file: bound once, nobody listening now.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = super::bind_unix(&cfg, 7001).expect("a stale socket is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let e = super::bind_unix(&cfg, 7001)
            .err()
            .expect("a live one is refused");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(".s.PGSQL.7001"), "{e}");
        drop(live);
        assert!(!path.exists(), "the file goes with the listener");
    }
}
