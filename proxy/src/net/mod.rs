//! Where a connection's ends are: a TCP address or a Unix socket, on the
//! client side (`listen`, `unix_socket_dir`) and the server side (`host`
//! naming a socket directory, as libpq and PgBouncer take it), host lists
//! and the DNS cache. Knows only config.

pub mod dns;
pub mod hosts;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One end of a connection, as SHOW CLIENTS/SERVERS, logs and cancel
/// requests need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    /// A Unix socket: its path and the port in its `.s.PGSQL.<port>` name
    /// (SHOW's `port` column, as PgBouncer shows it).
    Unix {
        path: Arc<Path>,
        port: u16,
    },
}

impl Endpoint {
    pub fn unix(path: PathBuf, port: u16) -> Endpoint {
        Endpoint::Unix {
            path: path.into(),
            port,
        }
    }

    /// The address column of SHOW CLIENTS/SERVERS: the IP, or "unix" as
    /// PgBouncer shows a socket.
    pub fn host_text(&self) -> String {
        match self {
            Endpoint::Tcp(a) => a.ip().to_string(),
            Endpoint::Unix { .. } => "unix".to_string(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Tcp(a) => a.port(),
            Endpoint::Unix { port, .. } => *port,
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Tcp(a) => Some(a.ip()),
            Endpoint::Unix { .. } => None,
        }
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Endpoint::Unix { .. })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => a.fmt(f),
            Endpoint::Unix { path, .. } => path.display().fmt(f),
        }
    }
}

/// A client connection as accepted, before anything is read from it.
pub enum Socket {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// True when libpq would take `host` as a Unix socket directory: an
/// absolute path. (`@` abstract sockets are refused by validation.)
pub fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

/// How messages name a server: `host:port`, or the socket's path for a
/// socket directory.
pub fn host_addr(host: &str, port: u16) -> String {
    if is_socket_dir(host) {
        return socket_path(host, port).display().to_string();
    }
    if host.contains(':') {
        return format!("[{host}]:{port}");
    }
    format!("{host}:{port}")
}

/// The DNS cache every pool shares, and how long it keeps answers.
#[derive(Clone, Default)]
pub struct Dns {
    pub cache: std::sync::Arc<dns::DnsCache>,
    pub ttl: dns::DnsTtl,
}

/// The socket file PostgreSQL (and PgBouncer) listens on in `dir` for
/// `port`: `<dir>/.s.PGSQL.<port>`.
pub fn socket_path(dir: &str, port: u16) -> PathBuf {
    Path::new(dir).join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_and_columns() {
        let path = socket_path("/var/run/postgresql", 5433);
        assert_eq!(path, Path::new("/var/run/postgresql/.s.PGSQL.5433"));
        let e = Endpoint::unix(path, 5433);
        assert_eq!(
            (e.host_text(), e.port(), e.ip()),
            ("unix".into(), 5433, None)
        );
        assert_eq!(e.to_string(), "/var/run/postgresql/.s.PGSQL.5433");
        let t = Endpoint::Tcp("10.0.0.1:5432".parse().unwrap());
        assert_eq!((t.host_text(), t.port()), ("10.0.0.1".into(), 5432));
        assert!(is_socket_dir("/tmp") && !is_socket_dir("db.local"));
    }
}
