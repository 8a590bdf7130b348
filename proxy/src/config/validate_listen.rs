//! Where clients connect: `listen` addresses and the Unix socket.

use super::{invalid, is_host_name};
use crate::config::{parse_socket_mode, AuthType, Config, ConfigError};
use std::net::SocketAddr;

pub(super) fn check(cfg: &Config) -> Result<(), ConfigError> {
    check_unix_socket(cfg)?;
    if cfg.listen.is_empty() && cfg.unix_socket_dir.is_empty() {
        return Err(invalid(
            "listen",
            "at least one address is needed, e.g. \"127.0.0.1:6432\" (or a unix_socket_dir)",
        ));
    }
    for (i, addr) in cfg.listen.iter().enumerate() {
        check_addr(addr).map_err(|m| invalid(format!("listen[{i}]"), m))?;
    }
    Ok(())
}

/// Checks the shape of `host:port` only: host names are resolved when the
/// listener binds, and failing a config check on a DNS hiccup would be wrong.
/// Port 0 is allowed (the OS picks one), which tests rely on.
pub(super) fn check_addr(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!(
            "`{addr}` is not host:port, e.g. 127.0.0.1:6432 or [::1]:6432"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "`{addr}`: port `{port}` is not a number from 0 to 65535"
        ));
    }
    if host.starts_with('[') {
        return Err(format!(
            "`{addr}`: `{host}` is not a bracketed IPv6 address"
        ));
    }
    if host.contains(':') {
        return Err(format!(
            "`{addr}`: IPv6 addresses need brackets, e.g. [::1]:6432"
        ));
    }
    if !is_host_name(host) {
        return Err(format!(
            "`{addr}`: `{host}` is not an IP address or host name"
        ));
    }
    Ok(())
}

/// `unix_socket_*`: an absolute directory (Linux's abstract `@` names are
/// not supported), a port to name the socket by, a file mode; and
/// `auth_type = "peer"` only with a socket to use it on.
fn check_unix_socket(cfg: &Config) -> Result<(), ConfigError> {
    let dir = cfg.unix_socket_dir.as_str();
    if dir.is_empty() {
        if cfg.auth_type == AuthType::Peer {
            return Err(invalid(
                "auth_type",
                "\"peer\" works on the Unix socket only: set unix_socket_dir",
            ));
        }
        return Ok(());
    }
    if !dir.starts_with('/') {
        return Err(invalid(
            "unix_socket_dir",
            format!("`{dir}` must be an absolute directory, e.g. /var/run/postgresql"),
        ));
    }
    if cfg.listen.is_empty() && cfg.unix_socket_port == 0 {
        return Err(invalid(
            "unix_socket_port",
            "must be set when `listen` is empty: it names the socket (.s.PGSQL.<port>)",
        ));
    }
    parse_socket_mode(&cfg.unix_socket_mode).map_err(|m| invalid("unix_socket_mode", m))?;
    Ok(())
}
