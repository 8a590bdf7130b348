//! Reaching the server before login: each entry of a host list in the
//! order `load_balance_hosts` gives, a name's addresses from the DNS
//! cache, TCP with TLS as `server_tls_sslmode` says, or a Unix socket for
//! a socket directory. Only a failure to reach a host moves on to the
//! next; a login refused by a host that answered does not (as libpq).

use super::{ServerError, ServerTarget};
use crate::net::{host_addr, hosts, Endpoint};
use crate::tls::Stream;
use tokio::net::{TcpStream, UnixStream};

/// A connected socket, not logged in yet.
pub(super) struct Opened {
    pub stream: Stream,
    pub peer: Endpoint,
    pub local: Endpoint,
    /// What messages name the server by: `host:port` or the socket path.
    pub addr: String,
}

pub(super) async fn open(target: &ServerTarget) -> Result<Opened, ServerError> {
    let list: Vec<&str> = hosts::split(&target.host).collect();
    let first = target.balance.first(list.len());
    let mut failed = None;
    for k in 0..list.len() {
        let i = (first + k) % list.len();
        let host = list[i];
        let addr = host_addr(host, target.port);
        let opened = if crate::net::is_socket_dir(host) {
            open_unix(target, host, &addr).await
        } else {
            open_tcp(target, host, &addr).await
        };
        match opened {
            Ok((stream, peer, local)) => {
                target.balance.reached(i);
                return Ok(Opened {
                    stream,
                    peer,
                    local,
                    addr,
                });
            }
            Err(e) if list.len() > 1 => {
                tracing::warn!(server = %addr, error = %e, "cannot reach this host of the list; trying the next");
                failed = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(failed.expect("a host list has at least one entry"))
}

/// TCP to `host`: each address it resolves to in turn, within one
/// `server_connect_timeout`; then TLS per server_tls_sslmode.
async fn open_tcp(
    target: &ServerTarget,
    host: &str,
    addr: &str,
) -> Result<(Stream, Endpoint, Endpoint), ServerError> {
    let connect_error = |source| ServerError::Connect {
        addr: addr.to_string(),
        source,
    };
    let connecting = async {
        let ips = target
            .dns
            .cache
            .resolve(host, target.dns.ttl)
            .await
            .map_err(connect_error)?;
        let mut last = None;
        for ip in ips {
            match TcpStream::connect((ip, target.port)).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        // What the name gave could not be reached: it may be stale.
        target.dns.cache.forget(host);
        Err(connect_error(last.expect("a resolved name has addresses")))
    };
    let stream = tokio::time::timeout(target.connect_timeout, connecting)
        .await
        .map_err(|_| {
            target.dns.cache.forget(host);
            ServerError::Timeout {
                what: "connecting to",
                addr: addr.to_string(),
            }
        })??;
    // Small request/response messages must not wait for Nagle.
    stream.set_nodelay(true)?;
    target.tcp.apply(&stream)?;
    let peer = Endpoint::Tcp(stream.peer_addr()?);
    let local = Endpoint::Tcp(stream.local_addr()?);
    let stream = tokio::time::timeout(target.login_timeout, target.tls.negotiate(stream, host))
        .await
        .map_err(|_| ServerError::Timeout {
            what: "negotiating TLS with",
            addr: addr.to_string(),
        })?
        .map_err(|e| ServerError::Tls {
            addr: addr.to_string(),
            source: e,
        })?;
    Ok((stream, peer, local))
}

/// The server's Unix socket in the directory `dir`. No TLS, as libpq:
/// PostgreSQL does not offer it on a socket, and the kernel already
/// vouches for both ends.
async fn open_unix(
    target: &ServerTarget,
    dir: &str,
    addr: &str,
) -> Result<(Stream, Endpoint, Endpoint), ServerError> {
    let path = crate::net::socket_path(dir, target.port);
    let stream = tokio::time::timeout(target.connect_timeout, UnixStream::connect(&path))
        .await
        .map_err(|_| ServerError::Timeout {
            what: "connecting to",
            addr: addr.to_string(),
        })?
        .map_err(|source| ServerError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let peer = Endpoint::unix(path, target.port);
    // pgwolf's end of a socket has no name; SHOW SERVERS shows the socket.
    Ok((Stream::Unix(stream), peer.clone(), peer))
}
