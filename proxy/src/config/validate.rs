//! Validation: the checks that types and `deny_unknown_fields` cannot express.
//!
//! Runs once per load (and so once per reload, before the new snapshot is
//! swapped in). Pure: no I/O, no DNS. Checks run in `Config` field order, then
//! databases and users in name order, and the first failure is returned, so
//! the same file always gives the same error. Keys are dotted as in TOML
//! (`databases.app.port`), which also reads well for an imported ini file.

#[path = "validate_listen.rs"]
mod listen;

use super::{
    split_host_port, AuthType, ClusterConfig, Config, ConfigError, DatabaseConfig, Provider,
    SslMode, UserConfig,
};
use std::time::Duration;

/// Smallest `max_packet_size`: a startup packet with a few parameters must fit.
const MIN_PACKET_SIZE: u32 = 1024;
/// Largest `max_packet_size`: PostgreSQL's own limit for a single message.
const MAX_PACKET_SIZE: u32 = 1 << 30;
/// Database names kept free for the admin console.
const RESERVED_DATABASES: [&str; 2] = ["pgwolf", "pgbouncer"];

/// PostgreSQL keeps each prepared statement in the backend's memory; more
/// than this per server connection is a typo.
const MAX_PREPARED_STATEMENTS: u32 = 100_000;
const MIN_PIPELINED_REQUESTS: u32 = 2_048;

/// A refused login holds its connection slot this long at most.
const MAX_AUTH_FAILURE_DELAY: Duration = Duration::from_secs(60);

/// More threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: u32 = 1024;

/// The checks every loaded config passes (also run on `SET` from the
/// admin console).
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    listen::check(cfg)?;
    if !cfg.http_listen.is_empty() {
        listen::check_addr(&cfg.http_listen).map_err(|m| invalid("http_listen", m))?;
    }
    check_auth(cfg)?;
    check_tls(cfg)?;
    check_pool_limits(cfg)?;
    check_timeouts(cfg)?;
    if cfg.max_prepared_statements > MAX_PREPARED_STATEMENTS {
        return Err(invalid(
            "max_prepared_statements",
            format!("must be 0 (off) to {MAX_PREPARED_STATEMENTS}"),
        ));
    }
    // Below this a server that buffers its answers (8 KiB of 5-byte
    // ParseCompletes before it flushes) could owe more than the limit
    // lets through, and the client would wait on itself.
    if cfg.max_pipelined_requests < MIN_PIPELINED_REQUESTS {
        return Err(invalid(
            "max_pipelined_requests",
            format!("must be at least {MIN_PIPELINED_REQUESTS}"),
        ));
    }
    if cfg.worker_threads > MAX_WORKER_THREADS {
        return Err(invalid(
            "worker_threads",
            format!("must be 0 (one per CPU) to {MAX_WORKER_THREADS}"),
        ));
    }
    if cfg
        .ignore_startup_parameters
        .iter()
        .any(|p| p.trim().is_empty())
    {
        return Err(invalid(
            "ignore_startup_parameters",
            "entries must not be empty",
        ));
    }
    for (name, cluster) in &cfg.clusters {
        check_cluster(name, cluster)?;
    }
    for (name, db) in &cfg.databases {
        check_database(cfg, name, db)?;
    }
    for (name, user) in &cfg.users {
        check_user(name, user)?;
    }
    Ok(())
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// RFC 1123 shape: dot-separated labels of letters, digits, '-' (and '_',
/// which some internal DNS zones use), no label starting or ending with '-'.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn auth_type_name(auth: AuthType) -> &'static str {
    match auth {
        AuthType::ScramSha256 => "scram-sha-256",
        AuthType::Md5 => "md5",
        AuthType::Plain => "plain",
        AuthType::Trust => "trust",
        AuthType::Hba => "hba",
        AuthType::Cert => "cert",
        AuthType::Peer => "peer",
    }
}

fn check_tls(cfg: &Config) -> Result<(), ConfigError> {
    let client = cfg.client_tls_sslmode;
    if client != SslMode::Disable {
        for (key, value) in [
            ("client_tls_cert_file", &cfg.client_tls_cert_file),
            ("client_tls_key_file", &cfg.client_tls_key_file),
        ] {
            if value.is_none() {
                return Err(invalid(
                    key,
                    format!("client_tls_sslmode = \"{}\" needs it", client.as_str()),
                ));
            }
        }
    }
    if client >= SslMode::VerifyCa && cfg.client_tls_ca_file.is_none() {
        return Err(invalid(
            "client_tls_ca_file",
            format!(
                "client_tls_sslmode = \"{}\" verifies client certificates against it",
                client.as_str()
            ),
        ));
    }
    if cfg.auth_type == AuthType::Cert
        && (client == SslMode::Disable || cfg.client_tls_ca_file.is_none())
    {
        return Err(invalid(
            "auth_type",
            "\"cert\" needs client TLS (client_tls_sslmode, client_tls_cert_file, \
             client_tls_key_file) and client_tls_ca_file to verify certificates",
        ));
    }
    if cfg.server_tls_cert_file.is_some() != cfg.server_tls_key_file.is_some() {
        return Err(invalid(
            "server_tls_cert_file",
            "and server_tls_key_file are set together or not at all",
        ));
    }
    for (key, value) in [
        ("client_tls_protocols", &cfg.client_tls_protocols),
        ("server_tls_protocols", &cfg.server_tls_protocols),
    ] {
        super::tls_protocol_versions(value).map_err(|e| invalid(key, e))?;
    }
    Ok(())
}

fn check_auth(cfg: &Config) -> Result<(), ConfigError> {
    if cfg.auth_user.as_deref() == Some("") {
        return Err(invalid("auth_user", "must not be empty; omit it instead"));
    }
    if cfg.auth_user.is_some() && !cfg.auth_query.contains("$1") {
        return Err(invalid(
            "auth_query",
            "must use $1 for the user name, e.g. \"SELECT uname, phash FROM pgwolf.user_lookup($1)\"",
        ));
    }
    match (&cfg.auth_hba_file, cfg.auth_type) {
        (None, AuthType::Hba) => {
            return Err(invalid(
                "auth_hba_file",
                "auth_type = \"hba\" needs an auth_hba_file (pg_hba.conf syntax)",
            ))
        }
        (Some(path), _) if path.as_os_str().is_empty() => {
            return Err(invalid(
                "auth_hba_file",
                "must not be empty; omit it instead",
            ))
        }
        _ => {}
    }
    match &cfg.auth_file {
        None if !matches!(
            cfg.auth_type,
            AuthType::Trust | AuthType::Cert | AuthType::Peer
        ) =>
        {
            Err(invalid(
                "auth_file",
                format!(
                    "auth_type = \"{}\" needs an auth_file (userlist.txt) to check passwords \
                 against; set auth_file, or use auth_type = \"trust\"",
                    auth_type_name(cfg.auth_type)
                ),
            ))
        }
        Some(path) if path.as_os_str().is_empty() => {
            Err(invalid("auth_file", "must not be empty; omit it instead"))
        }
        _ => Ok(()),
    }
}

fn check_pool_limits(cfg: &Config) -> Result<(), ConfigError> {
    if cfg.default_pool_size == 0 {
        return Err(invalid(
            "default_pool_size",
            "must be at least 1: a pool without server connections can serve nobody",
        ));
    }
    if cfg.min_pool_size > cfg.default_pool_size {
        return Err(invalid(
            "min_pool_size",
            format!(
                "{} exceeds default_pool_size ({})",
                cfg.min_pool_size, cfg.default_pool_size
            ),
        ));
    }
    if cfg.max_client_conn == 0 {
        return Err(invalid(
            "max_client_conn",
            "must be at least 1, or no client can connect",
        ));
    }
    if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&cfg.max_packet_size) {
        return Err(invalid(
            "max_packet_size",
            format!(
                "{} is outside {MIN_PACKET_SIZE}..={MAX_PACKET_SIZE} bytes (1 KiB to 1 GiB)",
                cfg.max_packet_size
            ),
        ));
    }
    Ok(())
}

fn check_timeouts(cfg: &Config) -> Result<(), ConfigError> {
    // These bound how long a half-open connection may hold a slot; 0 would
    // mean "fail at once", never "no limit", so it is refused.
    let must_be_positive: [(&str, Duration); 4] = [
        ("server_connect_timeout", cfg.server_connect_timeout),
        ("server_check_timeout", cfg.server_check_timeout),
        ("server_login_timeout", cfg.server_login_timeout),
        ("client_login_timeout", cfg.client_login_timeout),
    ];
    for (key, value) in must_be_positive {
        if value.is_zero() {
            return Err(invalid(key, "must be greater than zero, e.g. \"15s\""));
        }
    }
    if cfg.auth_failure_delay > MAX_AUTH_FAILURE_DELAY {
        return Err(invalid(
            "auth_failure_delay",
            "must be at most 60s: every delayed login holds a max_client_conn slot",
        ));
    }
    Ok(())
}

/// `table.name.field`, quoting `name` as TOML would when it is not a bare key
/// (so `*` and dotted names stay unambiguous).
fn key(table: &str, name: &str, field: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let name = if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if field.is_empty() {
        format!("{table}.{name}")
    } else {
        format!("{table}.{name}.{field}")
    }
}

fn check_database(cfg: &Config, name: &str, db: &DatabaseConfig) -> Result<(), ConfigError> {
    let k = |field: &str| key("databases", name, field);
    if name.is_empty() {
        return Err(invalid(k(""), "database name must not be empty"));
    }
    if RESERVED_DATABASES.contains(&name) {
        return Err(invalid(
            k(""),
            format!("the name `{name}` is reserved for the admin console"),
        ));
    }
    match &db.cluster {
        Some(c) if !cfg.clusters.contains_key(c) => {
            return Err(invalid(
                k("cluster"),
                format!("no cluster `{c}` is configured (add a [clusters.{c}] table)"),
            ));
        }
        None if db.role.is_some() => {
            return Err(invalid(
                k("role"),
                "needs `cluster`: a single host has no roles",
            ));
        }
        _ => {}
    }
    check_server_host(&db.host).map_err(|m| invalid(k("host"), m))?;
    if db.port == 0 {
        return Err(invalid(k("port"), "must be a port from 1 to 65535"));
    }
    let optional_names = [
        ("dbname", &db.dbname),
        ("user", &db.user),
        ("application_name", &db.application_name),
        ("client_encoding", &db.client_encoding),
        ("datestyle", &db.datestyle),
        ("timezone", &db.timezone),
    ];
    for (field, value) in optional_names {
        if value.as_deref() == Some("") {
            return Err(invalid(k(field), "must not be empty; omit it instead"));
        }
    }
    if db.pool_size == Some(0) {
        return Err(invalid(k("pool_size"), "must be at least 1"));
    }
    let size = db.pool_size.unwrap_or(cfg.default_pool_size);
    let min = db.min_pool_size.unwrap_or(cfg.min_pool_size);
    if min > size {
        // Name the key the user set here; if min comes from the global
        // setting, it is this database's pool_size that is too small.
        let field = if db.min_pool_size.is_some() {
            "min_pool_size"
        } else {
            "pool_size"
        };
        return Err(invalid(
            k(field),
            format!("min_pool_size ({min}) exceeds the pool size ({size})"),
        ));
    }
    Ok(())
}

fn check_cluster(name: &str, c: &ClusterConfig) -> Result<(), ConfigError> {
    let k = |field: &str| key("clusters", name, field);
    match c.provider {
        Provider::Static => {
            if c.hosts.is_empty() {
                return Err(invalid(
                    k("hosts"),
                    "the static provider needs at least one `host:port`",
                ));
            }
            if let Some(bad) = c.hosts.iter().find(|h| split_host_port(h).is_none()) {
                return Err(invalid(k("hosts"), format!("`{bad}` is not `host:port`")));
            }
            if c.probe_user.as_deref().unwrap_or("").is_empty() {
                return Err(invalid(
                    k("probe_user"),
                    "the static provider logs in to probe pg_is_in_recovery(): name a user",
                ));
            }
        }
        Provider::Kubernetes => {
            if c.port == 0 {
                return Err(invalid(k("port"), "must be a port from 1 to 65535"));
            }
            for (field, v) in [("endpoints", &c.endpoints), ("namespace", &c.namespace)] {
                if v.as_deref() == Some("") {
                    return Err(invalid(k(field), "must not be empty; omit it instead"));
                }
            }
        }
        Provider::Patroni => {
            if c.patroni_urls.is_empty() {
                return Err(invalid(
                    k("patroni_urls"),
                    "the patroni provider needs at least one REST API URL (http://host:8008)",
                ));
            }
            if let Some(bad) = c.patroni_urls.iter().find(|u| !is_http_url(u)) {
                return Err(invalid(
                    k("patroni_urls"),
                    format!("`{bad}` is not `http://host:port`"),
                ));
            }
        }
    }
    if c.poll_interval < Duration::from_millis(10) {
        return Err(invalid(k("poll_interval"), "must be at least 10ms"));
    }
    if c.probe_timeout.is_zero() {
        return Err(invalid(k("probe_timeout"), "must be more than 0"));
    }
    if c.read_only_suffix.chars().any(char::is_whitespace) {
        return Err(invalid(
            k("read_only_suffix"),
            "must not contain whitespace",
        ));
    }
    Ok(())
}

fn is_http_url(u: &str) -> bool {
    u.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .is_some_and(|a| !a.contains('/') && split_host_port(a).is_some())
}

/// A host name, an address or a socket directory (an absolute path, as
/// libpq takes it), or a comma list of them; forms pgwolf lacks would
/// otherwise fail only at the first connection.
fn check_server_host(host: &str) -> Result<(), String> {
    if host.trim().is_empty() {
        return Err("must not be empty".into());
    }
    for entry in host.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(format!("`{host}`: an empty entry in the host list"));
        }
        if entry.starts_with('@') {
            return Err(format!(
                "`{entry}` is an abstract Unix socket, which pgwolf does not support; \
                 use a socket directory such as /var/run/postgresql"
            ));
        }
        if entry.chars().any(char::is_whitespace) {
            return Err(format!("`{entry}` contains whitespace"));
        }
    }
    Ok(())
}

fn check_user(name: &str, user: &UserConfig) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(
            key("users", name, ""),
            "user name must not be empty",
        ));
    }
    if user.pool_size == Some(0) {
        return Err(invalid(
            key("users", name, "pool_size"),
            "must be at least 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
