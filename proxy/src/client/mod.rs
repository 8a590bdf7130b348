//! One task per client: startup, authentication, then the session loop.

mod auth;
mod auth_query;
mod buffers;
pub mod pump;
mod pump_prepared;
#[cfg(test)]
mod pump_tests;
mod session;
mod startup;

use crate::app::App;
use crate::net::{Endpoint, Socket};
use crate::pool::PoolError;
use crate::protocol::backend::{self, Severity};
use crate::protocol::frame::FrameError;
use crate::protocol::startup::{StartupError, StartupParams};
use crate::registry;
use crate::server::params::{tracked_index, ParamSet};
use crate::tls::Stream;
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Startup parameters handled by the proxy itself rather than passed on.
const HANDLED_PARAMS: [&str; 3] = ["user", "database", "replication"];

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client closed the connection")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    /// auth_hba_file: no line matched, or the line says reject or cert.
    #[error("{0}")]
    HbaRefused(String),
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("unsupported startup parameter: {0}")]
    UnsupportedParameter(String),
    /// `role`, `session_authorization`: the session would not be the
    /// logged-in user's, which every other client of the pool is.
    #[error("startup parameter \"{0}\" would change the session's identity, which a pooled server connection cannot carry: log in as that user")]
    IdentityParameter(String),
    /// PostgreSQL's own words for a name no setting has.
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownParameter(String),
    #[error(transparent)]
    Options(#[from] crate::protocol::options::OptionsError),
    #[error("timeout during startup and authentication (client_login_timeout)")]
    LoginTimeout,
    #[error("SSL connection is required (client_tls_sslmode)")]
    TlsRequired,
    /// auth_type = cert: no certificate, or its CommonName is another user.
    #[error("certificate authentication failed for user \"{0}\"")]
    CertFailed(String),
    /// auth_type = peer: the socket's OS user is another, or the client
    /// came over TCP (PostgreSQL's message).
    #[error("Peer authentication failed for user \"{0}\"")]
    PeerFailed(String),
    #[error("user \"{0}\" is not allowed on the admin console (admin_users, stats_users)")]
    NotAdmin(String),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl ClientError {
    /// SQLSTATE the client sees.
    pub fn sqlstate(&self) -> &str {
        match self {
            ClientError::AuthFailed(_) => "28P01",
            ClientError::HbaRefused(_) => "28000",
            ClientError::TlsRequired | ClientError::CertFailed(_) | ClientError::PeerFailed(_) => {
                "28000"
            }
            ClientError::UnknownDatabase(_) => "3D000",
            ClientError::UnsupportedParameter(_) => "08P01",
            ClientError::IdentityParameter(_) => "0A000",
            ClientError::UnknownParameter(_) => "42704",
            ClientError::Options(_) => "42601",
            ClientError::LoginTimeout => "08006",
            ClientError::NotAdmin(_) => "28000",
            ClientError::Pool(e) => e.sqlstate(),
            ClientError::Startup(StartupError::Protocol { .. }) => "0A000",
            ClientError::Startup(StartupError::NoUser) => "28000",
            _ => "08P01",
        }
    }
}

/// Best effort: the client may already be gone. Boxed because errors are
/// the cold path: callers then carry a pointer, not the write's state.
pub(crate) fn send_error<'a, S: AsyncWrite + Unpin + Send>(
    stream: &'a mut S,
    severity: Severity,
    code: &'a str,
    msg: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut out = BytesMut::with_capacity(64 + msg.len());
        backend::error_response(&mut out, severity, code, msg);
        if stream.write_all(&out).await.is_ok() {
            let _ = stream.flush().await;
        }
    })
}

/// An admin console user, logged in, for the console (which lives above
/// this module: the listener passes its entry point to [`establish`]).
pub struct Console {
    pub app: Arc<App>,
    pub stream: Stream,
    pub buf: BytesMut,
    pub access: Access,
    pub registration: registry::Registration,
}

/// What a console user may do: everything (`admin_users`) or SHOW only
/// (`stats_users`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    Stats,
}

/// Startup, authentication and welcome; None when the client was refused
/// (it has been told why), left, or used the admin console (run to its
/// end by `console`).
pub async fn establish<C>(
    app: Arc<App>,
    socket: Socket,
    peer: Endpoint,
    console: C,
) -> Option<session::Session>
where
    C: FnOnce(Box<Console>) -> Pin<Box<dyn Future<Output = ()> + Send>>,
{
    if let Socket::Tcp(tcp) = &socket {
        let _ = tcp.set_nodelay(true);
        let tcp_options = crate::sockopt::TcpOptions::from_config(&app.config.load());
        if let Err(e) = tcp_options.apply(tcp) {
            tracing::debug!(%peer, error = %e, "client socket: tcp_* settings not applied");
        }
    }
    let connected = std::time::SystemTime::now();
    // One deadline for the opening (TLS, startup packet) and the login
    // after it: client_login_timeout bounds the whole, not each part.
    let deadline = tokio::time::Instant::now() + app.config.load().client_login_timeout;
    let mut buf = BytesMut::with_capacity(1024);
    let (mut stream, first) = Box::pin(open(&app, socket, &mut buf, deadline, &peer)).await?;
    let params = match first {
        startup::First::Cancel { pid, secret } => {
            let timeout = app.config.load().server_connect_timeout;
            app.clients.cancel(pid, secret, timeout).await;
            return None;
        }
        startup::First::Startup(p) => p,
    };
    let user = params.get("user").unwrap_or_default().to_string();
    let db = params
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_string();
    let registration = app.clients.register(&app.shutdown);
    let info = |pool: Option<crate::pool::Pool>, stream: &Stream| registry::ClientInfo {
        pool,
        user: user.clone(),
        db: db.clone(),
        peer: peer.clone(),
        // A Unix client's end has no name: both columns show the socket.
        local: stream
            .tcp()
            .and_then(|t| t.local_addr().ok())
            .map_or_else(|| peer.clone(), Endpoint::Tcp),
        tls: stream.describe(),
        connected,
        application_name: params
            .get("application_name")
            .unwrap_or_default()
            .to_string(),
    };
    if crate::config::ADMIN_DATABASES.contains(&db.as_str()) {
        let login = admin_login(&app, &mut stream, &mut buf, &user, &db);
        match tokio::time::timeout_at(deadline, login).await {
            Ok(Ok(access)) => {
                tracing::info!(%peer, %user, ?access, "admin console login");
                registration.slot.logged_in(info(None, &stream));
                console(Box::new(Console {
                    app,
                    stream,
                    buf,
                    access,
                    registration,
                }))
                .await;
            }
            Ok(Err(ClientError::Eof)) => {}
            Ok(Err(e)) => {
                tracing::info!(%peer, %db, %user, error = %e, "admin console login refused");
                delay_refusal(&app, &e).await;
                send_error(&mut stream, Severity::Fatal, e.sqlstate(), &e.to_string()).await;
            }
            Err(_) => {
                let e = ClientError::LoginTimeout;
                send_error(&mut stream, Severity::Fatal, e.sqlstate(), &e.to_string()).await;
            }
        }
        return None;
    }
    let login = login(
        &app,
        &mut stream,
        &mut buf,
        &params,
        &db,
        &user,
        registration.key,
    );
    let (pool, mode, wanted) = match tokio::time::timeout_at(deadline, login).await {
        Ok(Ok(x)) => x,
        Ok(Err(ClientError::Eof)) => return None,
        Ok(Err(e)) => {
            tracing::info!(%peer, %db, %user, error = %e, "login refused");
            delay_refusal(&app, &e).await;
            send_error(&mut stream, Severity::Fatal, e.sqlstate(), &e.to_string()).await;
            return None;
        }
        Err(_) => {
            let e = ClientError::LoginTimeout;
            tracing::info!(%peer, %db, %user, "login timed out");
            send_error(&mut stream, Severity::Fatal, e.sqlstate(), &e.to_string()).await;
            return None;
        }
    };
    if app.config.load().log_connections {
        tracing::info!(%peer, %db, %user, ?mode, "client logged in");
    }
    registration
        .slot
        .logged_in(info(Some(pool.clone()), &stream));
    // Undone when the Session drops.
    pool.stats()
        .clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if buf.is_empty() {
        // An idle client holds no buffer; one is taken when it sends.
        buffers::release(&mut buf);
    }
    Some(session::Session {
        app,
        client: stream,
        cbuf: buf,
        pool,
        mode,
        wanted,
        cancel: registration,
        prepared: None,
    })
}

/// auth_failure_delay, for refusals that answer "who may log in" (a wrong
/// password or certificate, an HBA reject, a console user not allowed):
/// each guess then costs the guesser the delay.
async fn delay_refusal(app: &App, e: &ClientError) {
    let refused = matches!(
        e,
        ClientError::AuthFailed(_)
            | ClientError::CertFailed(_)
            | ClientError::PeerFailed(_)
            | ClientError::HbaRefused(_)
            | ClientError::NotAdmin(_)
    );
    let delay = app.config.load().auth_failure_delay;
    if refused && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Refuses with FATAL: the client is told why, then the connection ends.
async fn refuse(stream: &mut (impl AsyncWrite + Unpin + Send), e: &ClientError) {
    send_error(stream, Severity::Fatal, e.sqlstate(), &e.to_string()).await;
}

/// Encryption negotiation and the first packet, within `deadline`; None
/// when the client left or was refused (and told why, where TLS allows).
async fn open(
    app: &App,
    socket: Socket,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
    peer: &Endpoint,
) -> Option<(Stream, startup::First)> {
    let mut tcp = match socket {
        // No TLS on a socket (PostgreSQL answers SSLRequest 'N' there), so
        // client_tls_sslmode does not apply, as in PgBouncer.
        Socket::Unix(mut unix) => {
            let first = plaintext_opening(&mut unix, buf, deadline, peer, false).await?;
            return match first {
                startup::Opening::First(first) => Some((Stream::Unix(unix), first)),
                startup::Opening::Tls { .. } => None,
            };
        }
        Socket::Tcp(tcp) => tcp,
    };
    let tls = app.tls.load();
    let offered = tls
        .client
        .as_ref()
        .map(|c| (c.acceptor.clone(), c.required()));
    drop(tls);
    let direct = match offered {
        Some(_) => match tokio::time::timeout_at(deadline, startup::starts_tls(&tcp)).await {
            Ok(Ok(direct)) => direct,
            Ok(Err(_)) => return None,
            Err(_) => {
                refuse(&mut tcp, &ClientError::LoginTimeout).await;
                return None;
            }
        },
        None => false,
    };
    let direct = direct
        || match plaintext_opening(&mut tcp, buf, deadline, peer, offered.is_some()).await? {
            startup::Opening::First(first) => {
                let required = offered.is_some_and(|(_, required)| required);
                if required && matches!(first, startup::First::Startup(_)) {
                    tracing::info!(%peer, "plaintext login refused: client_tls_sslmode requires TLS");
                    refuse(&mut tcp, &ClientError::TlsRequired).await;
                    return None;
                }
                return Some((Stream::Plain(tcp), first));
            }
            startup::Opening::Tls { direct } => direct,
        };
    let (acceptor, _) = offered.expect("TLS is only started when offered");
    // Boxed: the handshake's state (a rustls connection) is most of this
    // future, and a plaintext login would otherwise allocate room for it.
    Box::pin(open_tls(acceptor, tcp, direct, buf, deadline, peer)).await
}

/// The plaintext opening (encryption requests, then the first packet)
/// within `deadline`; None when the client left or was refused.
async fn plaintext_opening(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin + Send),
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
    peer: &Endpoint,
    tls: bool,
) -> Option<startup::Opening> {
    match tokio::time::timeout_at(deadline, startup::negotiate(stream, buf, tls)).await {
        Ok(Ok(o)) => Some(o),
        Ok(Err(ClientError::Eof)) => None,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "bad startup packet");
            refuse(stream, &e).await;
            None
        }
        Err(_) => {
            refuse(stream, &ClientError::LoginTimeout).await;
            None
        }
    }
}

/// The TLS handshake and the first packet over it.
async fn open_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    direct: bool,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
    peer: &Endpoint,
) -> Option<(Stream, startup::First)> {
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "client TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "client TLS handshake timed out (client_login_timeout)");
            return None;
        }
    };
    if direct && tls.get_ref().1.alpn_protocol() != Some(crate::tls::ALPN_POSTGRESQL) {
        // PostgreSQL 17 insists on ALPN with direct TLS, so that a TLS
        // connection meant for another protocol is not taken for its own.
        tracing::info!(%peer, "direct TLS without ALPN \"postgresql\" refused");
        return None;
    }
    let mut stream = Stream::Accepted(Box::new(tls));
    match tokio::time::timeout_at(deadline, startup::read_first(&mut stream, buf)).await {
        Ok(Ok(first)) => Some((stream, first)),
        Ok(Err(ClientError::Eof)) => None,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "bad startup packet");
            refuse(&mut stream, &e).await;
            None
        }
        Err(_) => {
            refuse(&mut stream, &ClientError::LoginTimeout).await;
            None
        }
    }
}

/// Authenticates an admin console user; only `admin_users` and
/// `stats_users` get in.
async fn admin_login(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    db: &str,
) -> Result<Access, ClientError> {
    auth::authenticate(app, stream, buf, user, db).await?;
    let cfg = app.config.load();
    if cfg.admin_users.iter().any(|u| u == user) {
        Ok(Access::Admin)
    } else if cfg.stats_users.iter().any(|u| u == user) {
        Ok(Access::Stats)
    } else {
        Err(ClientError::NotAdmin(user.to_string()))
    }
}

/// Settings a pooled connection cannot carry: they change who the session
/// is.
const IDENTITY_PARAMS: [&str; 2] = ["role", "session_authorization"];

/// What the client asked for at startup, as PostgreSQL takes it: the
/// settings in `options` first, then the packet's other parameters (so
/// these win). Tracked ones go to their slot; any other setting is an
/// extra, applied to every server connection the client is lent
/// (`ParamSet::sync_sql`). `ignore` (`ignore_startup_parameters`) drops
/// names silently, as PgBouncer does; `options` listed there is not read.
fn client_settings(params: &StartupParams, ignore: &[String]) -> Result<ParamSet, ClientError> {
    let ignored = |name: &str| ignore.iter().any(|p| p.eq_ignore_ascii_case(name));
    let mut tracked = ParamSet::default();
    let mut extras = Vec::new();
    let mut take = |name: &str, value: &str| -> Result<(), ClientError> {
        if ignored(name) {
            return Ok(());
        }
        if let Some(i) = tracked_index(name) {
            tracked.set(i, Some(value));
            return Ok(());
        }
        let lower = name.to_ascii_lowercase();
        if IDENTITY_PARAMS.contains(&lower.as_str()) {
            return Err(ClientError::IdentityParameter(lower));
        }
        // A name goes into SET unquoted: only what a GUC name can be.
        let valid = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !valid {
            return Err(ClientError::UnknownParameter(name.to_string()));
        }
        extras.push((lower, value.to_string()));
        Ok(())
    };
    if let Some(options) = params.get("options").filter(|_| !ignored("options")) {
        for (name, value) in crate::protocol::options::settings(options)? {
            take(&name, &value)?;
        }
    }
    for (name, value) in &params.0 {
        if HANDLED_PARAMS.contains(&name.as_str()) {
            if name == "replication" && value != "false" && value != "0" {
                return Err(ClientError::UnsupportedParameter("replication".into()));
            }
            continue;
        }
        if name == "options" {
            continue;
        }
        take(name, value)?;
    }
    tracked.set_extras(extras);
    Ok(tracked)
}

/// Authenticates, finds the pool, and sends the welcome.
async fn login(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    params: &StartupParams,
    db: &str,
    user: &str,
    key: (i32, i32),
) -> Result<(crate::pool::Pool, crate::config::PoolMode, Arc<ParamSet>), ClientError> {
    let mut wanted_from_client = {
        let cfg = app.config.load();
        client_settings(params, &cfg.ignore_startup_parameters)?
    };
    auth::authenticate(app, stream, buf, user, db).await?;
    let pool = app
        .pool_for(db, user)
        .ok_or_else(|| ClientError::UnknownDatabase(db.to_string()))?;
    let mode = app.pool_mode(db, user);
    if let Some(extras) = wanted_from_client.extras().cloned() {
        wanted_from_client.share_extras(pool.shared_extras(extras));
    }
    let welcome = match pool.welcome().await {
        Ok(w) => w,
        Err(e) => {
            app.forget_failed_wildcard_pool(&pool);
            return Err(e.into());
        }
    };

    // The client's view: the server's parameters with its own choices on
    // top (unreported ones, extra_float_digits, included).
    let mut wanted = welcome.tracked.clone();
    ParamSet::overlay(&mut wanted, &wanted_from_client);
    let mut out = BytesMut::with_capacity(512);
    backend::auth_ok(&mut out);
    for (name, value) in &welcome.reported {
        // A reported setting the client chose at startup is announced
        // with its value (default_transaction_read_only, say).
        let value = tracked_index(name)
            .and_then(|i| wanted.get(i))
            .or_else(|| wanted.extra(name))
            .unwrap_or(value);
        backend::parameter_status(&mut out, name, value);
    }
    backend::backend_key_data(&mut out, key.0, key.1);
    backend::ready_for_query(&mut out, backend::TX_IDLE);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok((pool, mode, wanted))
}

#[cfg(test)]
mod size_tests {
    // The client task's own size is checked where it is made
    // (listener.rs).
    /// A login's own allocation, made for each login in flight: 200
    /// logins at once left 200 of these free but resident afterwards,
    /// which the idle-client figure at 2,000 clients counts. 2,200 and 784
    /// bytes here (2,640 and 3,040 while the console session, the TLS
    /// handshake and a pool's first check-out were inlined).
    const MAX_LOGIN_BYTES: usize = 2_400;
    const MAX_OPENING_BYTES: usize = 1_024;

    #[tokio::test]
    async fn login_futures_stay_small() {
        let app = crate::app::App::new(Default::default(), Default::default());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = || tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
        let peer = crate::net::Endpoint::Tcp(a.local_addr().unwrap());
        let (a, b) = (crate::net::Socket::Tcp(a), crate::net::Socket::Tcp(b));
        // What the listener passes is a fn item, as this closure: no bytes.
        let console = |_: Box<super::Console>| -> std::pin::Pin<
            Box<dyn std::future::Future<Output = ()> + Send>,
        > { Box::pin(async {}) };
        let login = super::establish(app.clone(), a, peer.clone(), console);
        let size = std::mem::size_of_val(&login);
        assert!(
            size <= MAX_LOGIN_BYTES,
            "a login's future grew to {size} bytes"
        );
        let mut buf = bytes::BytesMut::new();
        let opening = super::open(&app, b, &mut buf, tokio::time::Instant::now(), &peer);
        let size = std::mem::size_of_val(&opening);
        assert!(
            size <= MAX_OPENING_BYTES,
            "the opening's future grew to {size} bytes"
        );
    }
}
