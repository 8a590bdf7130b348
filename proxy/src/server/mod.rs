//! One server connection: connect, log in, run the proxy's own queries
//! (reset, parameter sync), and a cheap liveness check before reuse.

mod login;
mod open;
pub mod params;
pub mod scram_keys;

pub use login::{connect, ServerTarget};

use crate::net::Endpoint;
use crate::prepared::statements::ServerStatements;
use crate::protocol::backend::{self, parse_error_fields};
use crate::protocol::frame::split_message;
use crate::protocol::frontend;
use bytes::BytesMut;
use params::ParamSet;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// A server error's severity and message as pgwolf keeps them (characters):
/// enough for any PostgreSQL message, little for a hostile server's.
const MAX_ERROR_FIELD: usize = 1024;

/// Messages the proxy reads itself are small; this bounds them.
const OWN_QUERY_MAX: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out {what} server {addr}")]
    Timeout { what: &'static str, addr: String },
    #[error("server {addr}: {source}")]
    Tls {
        addr: String,
        source: crate::tls::ServerTlsError,
    },
    #[error("server connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection unexpectedly")]
    Closed,
    #[error("server protocol error: {0}")]
    Protocol(String),
    /// The server's own ErrorResponse, relayed with its SQLSTATE.
    #[error("{message}")]
    Server {
        severity: String,
        code: String,
        message: String,
    },
    /// The server would not take the auth file's or auth_query's verifier
    /// (logged with the reason by the login); PostgreSQL's own words for it.
    #[error("password authentication failed for user \"{user}\"")]
    PassThroughRefused { user: String },
    #[error("no password available to log in to the server as \"{user}\" ({method})")]
    NoPassword { user: String, method: &'static str },
    #[error("server asked for unsupported authentication method {0}")]
    AuthMethod(i32),
}

impl ServerError {
    /// SQLSTATE a client sees for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            ServerError::Server { code, .. } => code,
            ServerError::NoPassword { .. } | ServerError::AuthMethod(_) => "28000",
            ServerError::PassThroughRefused { .. } => "28P01",
            ServerError::Tls {
                source: crate::tls::ServerTlsError::Refused(_),
                ..
            } => "08001",
            ServerError::Protocol(_) => "08P01",
            _ => "08006",
        }
    }

    /// The server's ErrorResponse. A field it left out gets what libpq
    /// assumes (a hostile or broken server, PgBouncer's CVE-2026-6666):
    /// no SQLSTATE is XX000 (internal_error), so no client is ever sent an
    /// ErrorResponse without one, and every field is bounded.
    pub fn from_error_body(body: &[u8]) -> Self {
        let f = parse_error_fields(body);
        let or = |v: &str, default: &str| {
            let v: String = v.chars().take(MAX_ERROR_FIELD).collect();
            if v.is_empty() {
                default.to_string()
            } else {
                v
            }
        };
        let code = match f.code {
            c if c.len() == 5
                && c.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) =>
            {
                c.to_string()
            }
            _ => "XX000".to_string(),
        };
        ServerError::Server {
            severity: or(f.severity, "ERROR"),
            code,
            message: or(f.message, "the server sent an error without a message"),
        }
    }
}

/// A logged-in server connection as the client registry knows it.
#[derive(Debug, Clone)]
pub struct ServerLink {
    /// The server's address and its own cancel key.
    pub addr: Endpoint,
    pub pid: i32,
    pub secret: i32,
    /// pgwolf's end of the server connection (the server's socket for a
    /// Unix one, which has no name at pgwolf's end).
    pub local: Endpoint,
    pub created: Instant,
    /// The pool generation it was made for (older: close_needed).
    pub generation: u64,
    /// The TLS version, "" for plain (SHOW SERVERS `tls`).
    pub tls: &'static str,
}

impl ServerLink {
    /// SHOW SERVERS `ptr`: unique among live server connections, since a
    /// local port is unique per server address and a pid per server.
    pub fn ptr(&self) -> String {
        server_ptr(self.local.port(), self.pid)
    }
}

pub fn server_ptr(local_port: u16, pid: i32) -> String {
    format!(
        "0x{:x}",
        (u64::from(local_port) << 32) | u64::from(pid as u32)
    )
}

/// A logged-in server connection, owned by at most one client at a time.
pub struct ServerConn {
    pub stream: crate::tls::Stream,
    /// Bytes read from the server not yet forwarded; reused across clients.
    pub rbuf: BytesMut,
    /// Tracked session parameters as the server has them now.
    pub params: ParamSet,
    /// Every ParameterStatus seen at login, for the client welcome.
    pub reported: Vec<(String, String)>,
    /// The server's own cancel key.
    pub pid: i32,
    pub secret: i32,
    pub peer: Endpoint,
    /// pgwolf's end (SHOW SERVERS local_addr).
    pub local: Endpoint,
    pub created: Instant,
    pub last_used: Instant,
    /// The pool generation this connection was made for; a newer one means
    /// the target changed (reload) and the connection must not be reused.
    pub generation: u64,
    /// Statements prepared on it under pgwolf's names; kept while pooled.
    pub prepared: ServerStatements,
    /// What a client holding it shows of it (SHOW CLIENTS/SERVERS, cancel
    /// requests); shared, so lending the connection copies a pointer.
    /// None only before login finished (and in benchmarks).
    pub link: Option<std::sync::Arc<ServerLink>>,
    /// Connection-count permits (max_db/max_user_connections), freed on drop.
    pub(crate) _limits: Vec<OwnedSemaphorePermit>,
}

impl ServerConn {
    /// A connection over `stream` with no login behind it (generation 0, no
    /// parameters, no cancel key). Exists only for the micro-benchmarks in
    /// `benches/`, which pool loopback sockets; the proxy must not use it.
    #[doc(hidden)]
    pub fn for_bench(stream: TcpStream) -> ServerConn {
        let now = Instant::now();
        let or_loopback =
            |a: std::io::Result<SocketAddr>| Endpoint::Tcp(a.unwrap_or(([127, 0, 0, 1], 0).into()));
        ServerConn {
            peer: or_loopback(stream.peer_addr()),
            local: or_loopback(stream.local_addr()),
            stream: crate::tls::Stream::Plain(stream),
            rbuf: BytesMut::new(),
            params: ParamSet::default(),
            reported: Vec::new(),
            pid: 0,
            secret: 0,
            created: now,
            last_used: now,
            generation: 0,
            prepared: ServerStatements::new(0),
            link: None,
            _limits: Vec::new(),
        }
    }

    /// False when the server closed the socket or sent something unasked
    /// (e.g. FATAL from pg_terminate_backend) while the connection was idle.
    pub fn is_alive(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        self.stream.is_quiet()
    }

    /// Runs a simple query of the proxy's own (reset, SET) and reads to
    /// ReadyForQuery. The server's first error is returned after the
    /// connection is back at ReadyForQuery, so it stays usable.
    pub async fn run_own_query(&mut self, sql: &str) -> Result<(), ServerError> {
        self.own_query(sql).await.map(drop)
    }

    /// The first column of the first row of a simple query of the proxy's
    /// own (the topology probe's `pg_is_in_recovery()`), as text; None for
    /// no row or NULL. Errors as for [`ServerConn::run_own_query`].
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, ServerError> {
        Ok(self
            .own_query(sql)
            .await?
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// The first row of a simple query of the proxy's own (auth_query), as
    /// text columns (None: NULL); None for no row.
    pub async fn query_row(&mut self, sql: &str) -> Result<Option<Row>, ServerError> {
        self.own_query(sql).await
    }

    async fn own_query(&mut self, sql: &str) -> Result<Option<Row>, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 6);
        frontend::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let (mut value, mut first_error, mut rows) = (None, None, 0u32);
        loop {
            let Some((tag, body)) = self.read_message().await? else {
                continue;
            };
            match tag {
                backend::READY_FOR_QUERY => break,
                backend::ERROR_RESPONSE if first_error.is_none() => {
                    first_error = Some(ServerError::from_error_body(&body));
                }
                backend::PARAMETER_STATUS => {
                    if let Some((k, v)) = backend::parse_parameter_status(&body) {
                        self.params.observe(k, v);
                    }
                }
                backend::DATA_ROW => {
                    rows += 1;
                    if rows == 1 {
                        value = Some(columns(&body)?);
                    }
                }
                _ => {}
            }
        }
        first_error.map_or(Ok(value), Err)
    }

    /// One whole message, or None if more bytes were read but not enough yet.
    async fn read_message(&mut self) -> Result<Option<(u8, BytesMut)>, ServerError> {
        if let Some(m) = split_message(&mut self.rbuf, OWN_QUERY_MAX)
            .map_err(|e| ServerError::Protocol(e.to_string()))?
        {
            return Ok(Some(m));
        }
        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
            return Err(ServerError::Closed);
        }
        Ok(None)
    }

    /// Polite close: Terminate, so the server logs a clean disconnect.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::with_capacity(5);
        frontend::terminate(&mut out);
        if self.stream.write_all(&out).await.is_ok() {
            let _ = self.stream.flush().await;
        }
    }
}

/// A row of text columns; None is NULL.
pub type Row = Vec<Option<String>>;

/// The columns of a DataRow body: Int16 count, then per column an Int32
/// length (-1: NULL) and the bytes.
fn columns(body: &[u8]) -> Result<Row, ServerError> {
    let bad = || ServerError::Protocol("malformed DataRow".into());
    let count = u16::from_be_bytes(body.get(..2).ok_or_else(bad)?.try_into().unwrap());
    if count == 0 {
        return Err(bad());
    }
    let (mut at, mut row) = (2usize, Vec::with_capacity(count.into()));
    for _ in 0..count {
        let len = body.get(at..at + 4).ok_or_else(bad)?;
        let len = i32::from_be_bytes(len.try_into().unwrap());
        at += 4;
        if len < 0 {
            row.push(None);
            continue;
        }
        let value = body.get(at..at + len as usize).ok_or_else(bad)?;
        at += len as usize;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
    }
    Ok(row)
}
