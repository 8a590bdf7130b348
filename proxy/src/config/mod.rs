//! Configuration: typed settings with one place for defaults.
//!
//! `Config` is what the rest of the proxy reads: an immutable snapshot, swapped
//! whole on reload. Parsing (TOML natively, PgBouncer's ini as an import) and
//! validation live in their own files; nothing here does I/O except `load`.

mod cluster;
mod convert;
mod defaults;
mod ini_pgwolf;
mod load;
mod pgbouncer_ini;
mod tls_versions;
mod validate;

pub use cluster::{split_host_port, ClusterConfig, Provider, TargetRole};
pub use convert::{ini_to_toml, minimal_toml};
pub use load::{from_pgbouncer_ini_str, from_toml_str, load, ConfigError, Loaded};
pub use tls_versions::tls_protocol_versions;
pub use validate::validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The database names that reach the admin console instead of a pool.
pub const ADMIN_DATABASES: [&str; 2] = ["pgwolf", "pgbouncer"];

/// How long a client keeps a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Until the client disconnects.
    Session,
    /// Until the transaction ends (ReadyForQuery 'I').
    #[default]
    Transaction,
    /// Until the statement ends; multi-statement transactions are refused.
    Statement,
}

/// `unix_socket_mode`: octal permission bits, as chmod takes them.
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal file mode such as 0777"))
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    /// SCRAM-SHA-256 from a SCRAM verifier or a plaintext password.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// md5 where the auth file holds plaintext or an md5 hash; SCRAM where it
    /// holds a SCRAM verifier (as PgBouncer does).
    Md5,
    /// Cleartext password over the wire (only sensible over TLS).
    Plain,
    /// No password asked; the user must still be known unless `auth_file` is unset.
    Trust,
    /// The method of the first matching line of `auth_hba_file`.
    Hba,
    /// A client certificate (verified against `client_tls_ca_file`) whose
    /// CommonName is the user name; no password.
    Cert,
    /// The OS user on the other end of pgwolf's Unix socket must be the
    /// user name (PostgreSQL's `peer`, without an ident map); TCP clients
    /// are refused.
    Peer,
}

/// How one side uses TLS: libpq's `sslmode` values, which PgBouncer's
/// `client_tls_sslmode` and `server_tls_sslmode` share. Ordered weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    #[default]
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::str::FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!(
                "unknown sslmode `{s}` (disable, allow, prefer, require, verify-ca, verify-full)"
            )
        })
    }
}

/// Settings for the whole process. Defaults live in `defaults.rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port the proxy listens on, e.g. "127.0.0.1:6432". Several
    /// addresses are accepted as a list.
    pub listen: Vec<String>,
    /// A directory to listen in on a Unix socket too, `.s.PGSQL.<port>`
    /// as PostgreSQL and PgBouncer name it; "" for none.
    pub unix_socket_dir: String,
    /// The port in the socket's name; 0: the first `listen` entry's.
    pub unix_socket_port: u16,
    /// The socket file's permissions, octal as for chmod.
    pub unix_socket_mode: String,
    /// A group to give the socket file; "" keeps the process's.
    pub unix_socket_group: String,
    pub auth_type: AuthType,
    /// PgBouncer userlist.txt format: `"user" "password-or-md5-or-SCRAM-verifier"`.
    pub auth_file: Option<PathBuf>,
    /// One log line per client login (and refused login at info).
    pub log_connections: bool,
    /// One log line per client that leaves (with the error, if one ended
    /// it).
    pub log_disconnections: bool,
    /// One log line per database with the last period's averages.
    pub log_stats: bool,
    /// The period of SHOW STATS's averages and of `log_stats`.
    #[serde(with = "humantime_serde")]
    pub stats_period: Duration,
    /// How often the auth file is read to see whether it changed; a change
    /// reloads as SIGHUP does. A mounted Kubernetes Secret changes under a
    /// running pooler and nobody sends it a signal. Zero: never.
    #[serde(with = "humantime_serde")]
    pub auth_file_reload_interval: Duration,
    /// pg_hba.conf-style access rules (host, database, user, address,
    /// method) for `auth_type = "hba"`.
    pub auth_hba_file: Option<PathBuf>,
    /// Who pgwolf logs in as to look up, with `auth_query`, the secrets of
    /// users the auth file does not list; its own secret is in the auth file.
    pub auth_user: Option<String>,
    /// The lookup: `$1` becomes the user name (a quoted literal); the first
    /// row's second column is the secret (SCRAM verifier or md5 hash).
    pub auth_query: String,
    /// The database the lookup runs in; by default the client's.
    pub auth_dbname: Option<String>,
    /// How long a looked-up secret, or the lack of one, is reused.
    #[serde(with = "humantime_serde")]
    pub auth_cache_ttl: Duration,
    /// At most this many looked-up users are remembered, so a client
    /// trying random names cannot grow the cache without bound.
    pub auth_cache_max_entries: usize,
    pub pool_mode: PoolMode,
    /// Server connections per (database, user) pool.
    pub default_pool_size: u32,
    /// Server connections opened and kept even when idle, per pool.
    pub min_pool_size: u32,
    /// Extra connections a pool may open when a client waited `reserve_pool_timeout`.
    pub reserve_pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub reserve_pool_timeout: Duration,
    /// Server connections per database across its users; 0 = unlimited.
    pub max_db_connections: u32,
    /// Server connections per user across databases; 0 = unlimited.
    pub max_user_connections: u32,
    /// Client connections accepted at once.
    pub max_client_conn: u32,
    /// Largest protocol message accepted from a client or server, in bytes.
    pub max_packet_size: u32,
    /// Query run on a server connection before another client gets it in session mode.
    pub server_reset_query: String,
    /// Run `server_reset_query` in transaction and statement mode too.
    pub server_reset_query_always: bool,
    #[serde(with = "humantime_serde")]
    pub server_connect_timeout: Duration,
    /// How long a server host name's addresses are used before it is
    /// looked up again; zero: every connection looks it up.
    #[serde(with = "humantime_serde")]
    pub dns_max_ttl: Duration,
    /// How long a failed lookup is remembered.
    #[serde(with = "humantime_serde")]
    pub dns_nxdomain_ttl: Duration,
    /// Run on a pooled server connection idle at least
    /// `server_check_delay` before a client gets it; empty = never.
    pub server_check_query: String,
    /// How long a released connection is lent again without a check.
    #[serde(with = "humantime_serde")]
    pub server_check_delay: Duration,
    /// A check not answered this long fails: the connection is closed
    /// and the client gets another.
    #[serde(with = "humantime_serde")]
    pub server_check_timeout: Duration,
    /// Time allowed for a server connection's startup and authentication.
    #[serde(with = "humantime_serde")]
    pub server_login_timeout: Duration,
    /// TCP keepalive on client and server sockets: finds a peer that
    /// vanished (a lost node answers nothing) while the connection is idle.
    pub tcp_keepalive: bool,
    /// Silence before the first keepalive probe; 0 = the OS's (2 h on Linux).
    #[serde(with = "humantime_serde")]
    pub tcp_keepidle: Duration,
    /// Between unanswered probes; 0 = the OS's (75 s on Linux).
    #[serde(with = "humantime_serde")]
    pub tcp_keepintvl: Duration,
    /// Unanswered probes before the connection is dropped; 0 = the OS's (9).
    pub tcp_keepcnt: u32,
    /// Data sent and not acknowledged this long ends the connection
    /// (TCP_USER_TIMEOUT); 0 = the OS's (about 15 minutes of retransmits).
    #[serde(with = "humantime_serde")]
    pub tcp_user_timeout: Duration,
    /// Server connections older than this are closed when released; 0 = never.
    #[serde(with = "humantime_serde")]
    pub server_lifetime: Duration,
    /// Idle server connections unused this long are closed; 0 = never.
    #[serde(with = "humantime_serde")]
    pub server_idle_timeout: Duration,
    /// A client waiting this long for a server gets an error; 0 = wait forever.
    #[serde(with = "humantime_serde")]
    pub query_wait_timeout: Duration,
    /// A client idle inside a transaction this long is disconnected; 0 = never.
    #[serde(with = "humantime_serde")]
    pub idle_transaction_timeout: Duration,
    /// A client idle outside a transaction this long is disconnected; 0 = never.
    #[serde(with = "humantime_serde")]
    pub client_idle_timeout: Duration,
    /// A request the server has not answered this long is canceled and the
    /// client disconnected; 0 = never.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// A transaction open this long is ended (canceled or rolled back) and
    /// the client disconnected; 0 = never.
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// A client must finish startup and authentication within this.
    #[serde(with = "humantime_serde")]
    pub client_login_timeout: Duration,
    /// How long a refused login waits before its error is sent (as
    /// PostgreSQL's auth_delay): password guessing gets slower, a real user
    /// with a typo barely notices. 0 = no delay; at most 60 s.
    #[serde(with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// Named prepared statements kept per server connection in transaction
    /// and statement mode (pgwolf renames and re-prepares them so they
    /// survive pooling); 0 passes them through unmanaged.
    pub max_prepared_statements: u32,
    /// Requests of one client forwarded and not yet answered, past which
    /// pgwolf stops reading that client until answers come back (each
    /// costs a small record while prepared statements are managed).
    pub max_pipelined_requests: u32,
    /// Threads running client sessions. 1 (the default): tokio's
    /// current-thread scheduler; 0: a multi-thread runtime with one worker
    /// per CPU; N: N workers. Read at start only.
    pub worker_threads: u32,
    /// How long the admin console's PAUSE and WAIT_CLOSE wait for
    /// connections to finish before answering with an error; 0 = forever.
    #[serde(with = "humantime_serde")]
    pub admin_wait_timeout: Duration,
    /// How long SIGTERM/SIGINT let transactions finish before closing.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// TLS towards clients: `disable` answers SSLRequest with 'N'; `allow`
    /// and `prefer` accept TLS and plaintext; `require` refuses plaintext;
    /// `verify-ca` and `verify-full` also require a client certificate
    /// signed by `client_tls_ca_file`.
    pub client_tls_sslmode: SslMode,
    /// PEM certificate chain pgwolf shows clients.
    pub client_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `client_tls_cert_file`.
    pub client_tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates; when set, a
    /// certificate a client presents is verified in every mode.
    pub client_tls_ca_file: Option<PathBuf>,
    /// TLS versions offered to clients: `secure` (1.2 and 1.3), `tlsv1.3`, ...
    pub client_tls_protocols: String,
    /// TLS towards servers: `disable`; `allow`/`prefer` (TLS when the server
    /// offers it, unverified); `require` (TLS or an error); `verify-ca`
    /// (the chain leads to `server_tls_ca_file`); `verify-full` (and the
    /// certificate names the host).
    pub server_tls_sslmode: SslMode,
    /// PEM CA certificates that sign servers' certificates; unset: the
    /// system's CA bundle.
    pub server_tls_ca_file: Option<PathBuf>,
    /// PEM certificate pgwolf presents to servers that ask for one.
    pub server_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `server_tls_cert_file`.
    pub server_tls_key_file: Option<PathBuf>,
    /// TLS versions offered to servers.
    pub server_tls_protocols: String,
    /// Startup parameters clients may not set (they are dropped, as PgBouncer's
    /// `ignore_startup_parameters`), e.g. "extra_float_digits".
    pub ignore_startup_parameters: Vec<String>,
    /// `host:port` of the HTTP listener (/metrics, /healthz, /readyz,
    /// /topology); "" for none.
    pub http_listen: String,
    /// Users who may run every admin console command (database `pgwolf`).
    pub admin_users: Vec<String>,
    /// Users who may run the admin console's SHOW commands.
    pub stats_users: Vec<String>,
    /// Logical databases clients may connect to. The key "*" is a fallback
    /// for any other name (its `dbname` defaults to the requested name).
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Per-user overrides.
    pub users: BTreeMap<String, UserConfig>,
    /// Clusters whose primary pgwolf follows; a database names one with
    /// `cluster` instead of a `host`.
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// A logical database: where its server is and optional per-database overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default = "defaults::host")]
    pub host: String,
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// Name on the server; defaults to the logical name.
    pub dbname: Option<String>,
    /// Log in to the server as this user whoever the client is (one pool per database).
    pub user: Option<String>,
    /// Password for the server login; otherwise the auth file's entry for the user.
    pub password: Option<String>,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
    pub min_pool_size: Option<u32>,
    pub reserve_pool_size: Option<u32>,
    pub max_db_connections: Option<u32>,
    /// Sent to the server at startup when the client did not ask for one.
    pub application_name: Option<String>,
    pub client_encoding: Option<String>,
    pub datestyle: Option<String>,
    pub timezone: Option<String>,
    /// Route to this cluster's members instead of `host`/`port`.
    pub cluster: Option<String>,
    /// With `cluster`: which members serve this database.
    pub role: Option<TargetRole>,
    /// With a host list: which entry a new server connection tries first.
    pub load_balance_hosts: Option<LoadBalanceHosts>,
}

/// `load_balance_hosts`, PgBouncer 1.24's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalanceHosts {
    /// Each new connection starts at the next entry.
    #[default]
    RoundRobin,
    /// Stay on the entry that worked until it fails.
    Disable,
}

/// Per-user overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
    pub max_user_connections: Option<u32>,
}

impl Config {
    /// The database entry for a requested name, falling back to "*".
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.get(name).or_else(|| self.databases.get("*"))
    }

    /// The entry a client's database name routes to: a configured name, else
    /// the read-only alias (`<db><read_only_suffix>`) of a database on a
    /// cluster, as that database with role replica, else "*". The entry's
    /// `dbname` is the server's database name.
    pub fn resolve_database(&self, name: &str) -> Option<DatabaseConfig> {
        if let Some(d) = self.databases.get(name) {
            return Some(d.clone());
        }
        self.read_only_alias(name)
            .or_else(|| self.databases.get("*").cloned())
    }

    /// True when `name` reaches a database only through the "*" entry: a
    /// name the client chose, which no line of the config bounds.
    pub fn through_wildcard(&self, name: &str) -> bool {
        !self.databases.contains_key(name)
            && self.databases.contains_key("*")
            && self.read_only_alias(name).is_none()
    }

    /// `<db><read_only_suffix>` of a database on a cluster, as that
    /// database with role replica.
    fn read_only_alias(&self, name: &str) -> Option<DatabaseConfig> {
        for (base, d) in &self.databases {
            let Some(c) = d.cluster.as_ref().and_then(|c| self.clusters.get(c)) else {
                continue;
            };
            let suffix = &c.read_only_suffix;
            if !suffix.is_empty() && name.strip_suffix(suffix.as_str()) == Some(base.as_str()) {
                let mut alias = d.clone();
                alias.dbname = Some(d.dbname.clone().unwrap_or_else(|| base.clone()));
                alias.role = Some(TargetRole::Replica);
                return Some(alias);
            }
        }
        None
    }

    pub fn pool_mode_for(&self, db: &DatabaseConfig, user: &str) -> PoolMode {
        self.users
            .get(user)
            .and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(self.pool_mode)
    }

    pub fn pool_size_for(&self, db: &DatabaseConfig, user: &str) -> u32 {
        self.users
            .get(user)
            .and_then(|u| u.pool_size)
            .or(db.pool_size)
            .unwrap_or(self.default_pool_size)
    }

    pub fn max_user_connections_for(&self, user: &str) -> u32 {
        self.users
            .get(user)
            .and_then(|u| u.max_user_connections)
            .unwrap_or(self.max_user_connections)
    }
}
