//! Every default in one place, so docs/configuration.md has one source to match.

use super::{AuthType, Config, PoolMode, SslMode};
use std::collections::BTreeMap;
use std::time::Duration;

/// The lookup when `auth_query` is not set. Unlike PgBouncer's old
/// default (`pg_shadow`, CVE-2025-2291) it returns nothing for a role that
/// cannot log in or whose password is past `VALID UNTIL`, and its third
/// column, the seconds until that moment, ends the cache entry then, so
/// the auth cache never carries a password past its expiry. Names are
/// schema-qualified; the lookup also runs with a fixed search_path
/// (`client/auth_query.rs`). Reading `pg_authid` needs a superuser
/// `auth_user`: docs/security.md has the function to use instead.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT rolname::text, rolpassword::text, \
     CASE WHEN pg_catalog.isfinite(rolvaliduntil) \
     THEN EXTRACT(EPOCH FROM rolvaliduntil OPERATOR(pg_catalog.-) pg_catalog.now()) END \
     FROM pg_catalog.pg_authid \
     WHERE rolname OPERATOR(pg_catalog.=) $1 AND rolcanlogin \
     AND (rolvaliduntil IS NULL OR rolvaliduntil OPERATOR(pg_catalog.>) pg_catalog.now())";

pub(super) fn host() -> String {
    "127.0.0.1".to_string()
}

pub(super) fn port() -> u16 {
    5432
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["127.0.0.1:6432".to_string()],
            unix_socket_dir: String::new(),
            unix_socket_port: 0,
            unix_socket_mode: "0777".to_string(),
            unix_socket_group: String::new(),
            auth_type: AuthType::ScramSha256,
            auth_file: None,
            auth_file_reload_interval: Duration::from_secs(10),
            log_connections: true,
            log_disconnections: true,
            log_stats: true,
            stats_period: Duration::from_secs(60),
            auth_hba_file: None,
            auth_user: None,
            auth_query: DEFAULT_AUTH_QUERY.to_string(),
            auth_dbname: None,
            auth_cache_ttl: Duration::from_secs(10),
            auth_cache_max_entries: 10_000,
            pool_mode: PoolMode::Transaction,
            default_pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            max_db_connections: 0,
            max_user_connections: 0,
            max_client_conn: 10_000,
            max_packet_size: 1 << 30,
            server_reset_query: "DISCARD ALL".to_string(),
            server_reset_query_always: false,
            server_connect_timeout: Duration::from_secs(15),
            dns_max_ttl: Duration::from_secs(15),
            dns_nxdomain_ttl: Duration::from_secs(15),
            server_check_query: "SELECT 1".to_string(),
            server_check_delay: Duration::from_secs(30),
            // A live server answers SELECT 1 in well under a millisecond;
            // one that does not within 2 s is hung or lost, and the client
            // is better served by a new connection than by waiting on it.
            server_check_timeout: Duration::from_secs(2),
            server_login_timeout: Duration::from_secs(15),
            // A vanished peer is found after 10 s of silence plus 3 probes
            // 5 s apart (25 s), and unacknowledged data gives up at 25 s:
            // well inside a Patroni failover's time scale, not the kernel's
            // 2 hours (keepalive) or 15 minutes (retransmits).
            tcp_keepalive: true,
            tcp_keepidle: Duration::from_secs(10),
            tcp_keepintvl: Duration::from_secs(5),
            tcp_keepcnt: 3,
            tcp_user_timeout: Duration::from_secs(25),
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            query_wait_timeout: Duration::from_secs(120),
            idle_transaction_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            query_timeout: Duration::ZERO,
            transaction_timeout: Duration::ZERO,
            client_login_timeout: Duration::from_secs(60),
            auth_failure_delay: Duration::from_millis(500),
            max_prepared_statements: 200,
            max_pipelined_requests: 10_000,
            worker_threads: 1,
            admin_wait_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            client_tls_sslmode: SslMode::Disable,
            client_tls_cert_file: None,
            client_tls_key_file: None,
            client_tls_ca_file: None,
            client_tls_protocols: "secure".to_string(),
            // libpq's default, and PgBouncer's since 1.21: encrypt when the
            // server can, at the price of one round trip per connection.
            server_tls_sslmode: SslMode::Prefer,
            server_tls_ca_file: None,
            server_tls_cert_file: None,
            server_tls_key_file: None,
            server_tls_protocols: "secure".to_string(),
            ignore_startup_parameters: Vec::new(),
            http_listen: "127.0.0.1:9930".to_string(),
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            databases: BTreeMap::new(),
            users: BTreeMap::new(),
            clusters: BTreeMap::new(),
        }
    }
}
