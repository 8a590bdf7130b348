//! The options pgwolf sets on every TCP connection it accepts or opens:
//! TCP keepalive and TCP_USER_TIMEOUT, with PgBouncer's setting names
//! (`tcp_keepalive`, `tcp_keepidle`, `tcp_keepintvl`, `tcp_keepcnt`,
//! `tcp_user_timeout`). They bound what no topology change reveals: a
//! client whose link died still holding a server connection, a server
//! whose node vanished while pgwolf waits on it. Knows only config.

use crate::config::Config;
use socket2::{SockRef, TcpKeepalive};
use std::time::Duration;

/// The `tcp_*` settings as applied to one socket; zero leaves the OS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub keepalive: bool,
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
    pub user_timeout: Duration,
}

impl TcpOptions {
    pub fn from_config(cfg: &Config) -> TcpOptions {
        TcpOptions {
            keepalive: cfg.tcp_keepalive,
            idle: cfg.tcp_keepidle,
            interval: cfg.tcp_keepintvl,
            count: cfg.tcp_keepcnt,
            user_timeout: cfg.tcp_user_timeout,
        }
    }

    /// Sets the options on `stream`.
    pub fn apply(&self, stream: &tokio::net::TcpStream) -> std::io::Result<()> {
        let sock = SockRef::from(stream);
        if self.keepalive {
            let mut k = TcpKeepalive::new();
            if !self.idle.is_zero() {
                k = k.with_time(self.idle);
            }
            if !self.interval.is_zero() {
                k = k.with_interval(self.interval);
            }
            if self.count > 0 {
                k = k.with_retries(self.count);
            }
            sock.set_tcp_keepalive(&k)?;
        } else {
            sock.set_keepalive(false)?;
        }
        if !self.user_timeout.is_zero() {
            sock.set_tcp_user_timeout(Some(self.user_timeout))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_settings_reach_the_socket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let opts = TcpOptions::from_config(&Config::default());
        opts.apply(&s).unwrap();
        let sock = SockRef::from(&s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(10));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(25))
        );
        let off = TcpOptions {
            keepalive: false,
            ..opts
        };
        off.apply(&s).unwrap();
        assert!(!sock.keepalive().unwrap());
    }
}
