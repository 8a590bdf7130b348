//! PgBouncer ini import: `pgbouncer.ini` text → `Config` plus warnings.
//!
//! A small hand parser rather than rust-ini: PgBouncer's format is narrower
//! than generic ini (comments only at line start, `#`/`;` inside values are
//! literal, no value quoting or escapes outside connection strings), and
//! every error must carry its line number, which rust-ini does not expose for
//! values. Pure: no I/O, so `%include` is refused rather than followed.
//!
//! PgBouncer settings pgwolf lacks are listed in one warning, never dropped
//! silently; a key PgBouncer itself would not know is an error. Keys absent
//! from the file take PgBouncer's default where it differs from pgwolf's
//! (`pgbouncer_defaults`), so an imported file behaves as it did before.

use super::{
    defaults, AuthType, Config, ConfigError, DatabaseConfig, LoadBalanceHosts, PoolMode, UserConfig,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `[pgbouncer]` keys that PgBouncer knows and pgwolf does not implement.
/// (Tables are kept dense by hand; rustfmt would put one key per line.)
#[rustfmt::skip]
const UNSUPPORTED_GLOBAL: &[&str] = &[
    "application_name_add_host",
    "auth_ident_file", "auth_ldap_options",
    "autodb_idle_timeout", "cancel_wait_timeout", "client_tls13_ciphers",
    "client_tls_ciphers", "client_tls_dheparams", "client_tls_ecdhcurve",
    "conffile", "disable_pqexec",
    "dns_zone_check_period", "job_name",
    "listen_backlog", "log_pooler_errors",
    "logfile", "login_notify_message", "max_db_client_connections",
    "max_user_client_connections", "peer_id", "pidfile",
    "pkt_buf", "pool_idle_timeout", "query_wait_notify",
    "resolv_conf", "sbuf_loopcnt", "scram_iterations", "server_fast_close",
    "server_login_retry",
    "server_round_robin", "server_tls13_ciphers", "server_tls_ciphers",
    "service_name", "so_reuseport",
    "suspend_timeout", "syslog", "syslog_facility",
    "syslog_ident", "tcp_defer_accept", "tcp_socket_buffer",
    "user", "verbose",
];

/// `[databases]` connection-string keys PgBouncer knows and pgwolf does not.
#[rustfmt::skip]
const UNSUPPORTED_DATABASE: &[&str] = &[
    "auth_dbname", "auth_query", "auth_user", "connect_query",
    "max_db_client_connections", "query_wait_timeout", "server_lifetime",
    "target_session_attrs",
];

/// `[users]` keys PgBouncer knows and pgwolf does not.
#[rustfmt::skip]
const UNSUPPORTED_USER: &[&str] = &[
    "client_idle_timeout", "idle_transaction_timeout", "max_user_client_connections",
    "query_timeout", "query_wait_timeout", "reserve_pool_size", "transaction_timeout",
];

/// PgBouncer's own `listen_port` default.
const PGBOUNCER_LISTEN_PORT: u16 = 6432;

/// pgwolf's defaults, except where PgBouncer's differ and the difference
/// changes behaviour: an imported file must pool and authenticate as before.
/// (`max_packet_size` keeps pgwolf's 1 GiB: PgBouncer's 2 GiB - 1 exceeds
/// PostgreSQL's own message limit.)
fn pgbouncer_defaults() -> Config {
    Config {
        // PgBouncer has no HTTP listener: an imported config opens none.
        http_listen: String::new(),
        pool_mode: PoolMode::Session,
        auth_type: AuthType::Md5,
        max_client_conn: 100,
        unix_socket_dir: "/tmp".to_string(),
        ..Config::default()
    }
}

/// Parse PgBouncer ini text; `path` is only used in messages. Relative paths
/// stay relative. The result is not validated yet.
pub(super) fn from_ini_str(text: &str, path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let (text, pgwolf) = super::ini_pgwolf::split(text);
    let lines = parse_lines(&text).map_err(parse_error)?;
    let mut import = Import {
        cfg: pgbouncer_defaults(),
        listen_addr: None,
        listen_port: PGBOUNCER_LISTEN_PORT,
        unsupported: Unsupported::default(),
        hostless: Vec::new(),
    };
    for line in &lines {
        import.apply(line).map_err(parse_error)?;
    }
    let (cfg, warnings) = import.finish(path);
    match pgwolf {
        None => Ok((cfg, warnings)),
        Some((first_line, toml_text)) => {
            let cfg = super::ini_pgwolf::overlay(cfg, &toml_text).map_err(|m| {
                parse_error(format!("[pgwolf] (TOML, from line {first_line}): {m}"))
            })?;
            Ok((cfg, warnings))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    PgBouncer,
    Databases,
    Users,
    Peers,
}

impl Section {
    fn from_name(name: &str) -> Option<Section> {
        match name {
            "pgbouncer" => Some(Section::PgBouncer),
            "databases" => Some(Section::Databases),
            "users" => Some(Section::Users),
            "peers" => Some(Section::Peers),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Section::PgBouncer => "pgbouncer",
            Section::Databases => "databases",
            Section::Users => "users",
            Section::Peers => "peers",
        }
    }
}

/// One `key = value` line, with where it came from for error messages.
#[derive(Debug)]
struct Line<'a> {
    no: usize,
    section: Section,
    key: String,
    value: &'a str,
}

impl Line<'_> {
    fn err(&self, message: impl std::fmt::Display) -> String {
        format!(
            "line {}: [{}] {}: {message}",
            self.no,
            self.section.name(),
            self.key
        )
    }
}

/// Split the file into `key = value` lines tagged with their section.
fn parse_lines(text: &str) -> Result<Vec<Line<'_>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut section = None;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(directive) = line.strip_prefix('%') {
            return Err(if directive.starts_with("include") {
                format!(
                    "line {no}: %include is not supported; \
                     copy the included settings into this file"
                )
            } else {
                format!("line {no}: unknown directive `{line}`")
            });
        }
        if let Some(header) = line.strip_prefix('[') {
            let (name, rest) = header
                .split_once(']')
                .ok_or_else(|| format!("line {no}: `{line}` is missing its closing `]`"))?;
            let rest = rest.trim_start();
            if !(rest.is_empty() || rest.starts_with(';') || rest.starts_with('#')) {
                return Err(format!(
                    "line {no}: unexpected `{rest}` after section header"
                ));
            }
            let name = name.trim();
            section = Some(Section::from_name(name).ok_or_else(|| {
                format!(
                    "line {no}: unknown section [{name}] \
                     (PgBouncer has [pgbouncer], [databases], [users], [peers]; \
                     pgwolf's own settings go in [pgwolf])"
                )
            })?);
            continue;
        }
        let (key, value) = split_key_value(line).map_err(|m| format!("line {no}: {m}"))?;
        let section =
            section.ok_or_else(|| format!("line {no}: `{key}` appears before any [section]"))?;
        out.push(Line {
            no,
            section,
            key,
            value,
        });
    }
    Ok(out)
}

/// `key = value`; a key may be double-quoted ("" for a quote) so database
/// names with odd characters work, as in PgBouncer.
fn split_key_value(line: &str) -> Result<(String, &str), String> {
    let expected = || format!("expected `key = value`, a [section] or a comment, got `{line}`");
    let (key, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let mut key = String::new();
        let mut chars = quoted.char_indices();
        let rest = loop {
            match chars.next() {
                Some((i, '"')) if quoted[i + 1..].starts_with('"') => {
                    key.push('"');
                    chars.next();
                }
                Some((i, '"')) => break &quoted[i + 1..],
                Some((_, c)) => key.push(c),
                None => return Err(format!("unterminated quoted key in `{line}`")),
            }
        };
        (
            key,
            rest.trim_start().strip_prefix('=').ok_or_else(expected)?,
        )
    } else {
        let (key, rest) = line.split_once('=').ok_or_else(expected)?;
        let key = key.trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(expected());
        }
        (key.to_string(), rest)
    };
    Ok((key, rest.trim()))
}

/// Split a libpq-style connection string (`k=v k2='v 2'`) into pairs.
/// Quoted values accept `\'` and `\\` (libpq) and `''` (PgBouncer) escapes;
/// other backslashes are kept, since PgBouncer keeps them.
fn parse_connstr(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let bad_pair = || format!("expected key=value at `{rest}`");
        let (key, after_eq) = rest.split_once('=').ok_or_else(bad_pair)?;
        let key = key.trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad_pair());
        }
        let after_eq = after_eq.trim_start();
        let (value, after) = match after_eq.strip_prefix('\'') {
            Some(quoted) => unquote(quoted).map_err(|m| format!("{key}: {m}"))?,
            None => {
                let end = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
                (after_eq[..end].to_string(), &after_eq[end..])
            }
        };
        if value.is_empty() {
            return Err(format!("{key}: empty value"));
        }
        if !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return Err(format!(
                "{key}: unexpected `{after}` after the quoted value"
            ));
        }
        pairs.push((key.to_string(), value));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// The text after an opening `'`: returns the value and what follows the
/// closing quote.
fn unquote(quoted: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        match (c, next) {
            ('\\', Some(n @ ('\'' | '\\'))) | ('\'', Some(n @ '\'')) => {
                value.push(n);
                chars.next();
            }
            ('\'', _) => return Ok((value, &quoted[i + 1..])),
            _ => value.push(c),
        }
    }
    Err("unterminated quoted value".into())
}

fn whole<T: FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("expected a whole number, got `{value}`"))
}

/// PgBouncer times are seconds as a decimal number (`0.5`, `30`, `3600.0`).
fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("expected seconds such as 30 or 0.5, got `{value}`"))
}

/// PgBouncer lookups are case-insensitive.
fn pool_mode(value: &str) -> Result<PoolMode, String> {
    match value.to_ascii_lowercase().as_str() {
        "session" => Ok(PoolMode::Session),
        "transaction" => Ok(PoolMode::Transaction),
        "statement" => Ok(PoolMode::Statement),
        _ => Err(format!(
            "`{value}` is not session, transaction or statement"
        )),
    }
}

fn load_balance(value: &str) -> Result<LoadBalanceHosts, String> {
    match value {
        "round-robin" => Ok(LoadBalanceHosts::RoundRobin),
        "disable" => Ok(LoadBalanceHosts::Disable),
        _ => Err(format!("`{value}` is not round-robin or disable")),
    }
}

fn auth_type(value: &str) -> Result<AuthType, String> {
    match value.to_ascii_lowercase().as_str() {
        "scram-sha-256" => Ok(AuthType::ScramSha256),
        "md5" => Ok(AuthType::Md5),
        "plain" => Ok(AuthType::Plain),
        "trust" => Ok(AuthType::Trust),
        "hba" => Ok(AuthType::Hba),
        "cert" => Ok(AuthType::Cert),
        "peer" => Ok(AuthType::Peer),
        "any" | "ldap" | "pam" => Err(format!(
            "`{value}` is not supported by pgwolf (use scram-sha-256, md5, plain, trust, hba, cert or peer)"
        )),
        _ => Err(format!("`{value}` is not a PgBouncer auth_type")),
    }
}

/// An empty value means "not set", as in PgBouncer.
fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn comma_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Settings seen but not supported, grouped for one warning line.
#[derive(Default)]
struct Unsupported {
    global: Vec<String>,
    databases: Vec<String>,
    users: Vec<String>,
    peers: bool,
}

impl Unsupported {
    fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (section, keys) in [
            ("[pgbouncer]", &self.global),
            ("[databases]", &self.databases),
            ("[users]", &self.users),
        ] {
            if !keys.is_empty() {
                parts.push(format!("{section} {}", keys.join(", ")));
            }
        }
        if self.peers {
            parts.push("the [peers] section".into());
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

struct Import {
    cfg: Config,
    listen_addr: Option<String>,
    listen_port: u16,
    unsupported: Unsupported,
    /// Databases without `host=`: PgBouncer's `unix_socket_dir` socket.
    hostless: Vec<String>,
}

impl Import {
    fn apply(&mut self, line: &Line<'_>) -> Result<(), String> {
        match line.section {
            Section::PgBouncer => self.global(line).map_err(|m| line.err(m)),
            Section::Databases => {
                let db = self.database(line)?;
                self.cfg.databases.insert(line.key.clone(), db);
                Ok(())
            }
            Section::Users => {
                let user = self.user(line)?;
                self.cfg.users.insert(line.key.clone(), user);
                Ok(())
            }
            Section::Peers => {
                self.unsupported.peers = true;
                Ok(())
            }
        }
    }

    fn global(&mut self, line: &Line<'_>) -> Result<(), String> {
        let (cfg, v) = (&mut self.cfg, line.value);
        match line.key.as_str() {
            "listen_addr" => self.listen_addr = Some(v.to_string()),
            "listen_port" => self.listen_port = whole(v)?,
            "auth_type" => cfg.auth_type = auth_type(v)?,
            "auth_file" => cfg.auth_file = (!v.is_empty()).then(|| PathBuf::from(v)),
            "auth_hba_file" => cfg.auth_hba_file = (!v.is_empty()).then(|| PathBuf::from(v)),
            "auth_user" => cfg.auth_user = (!v.is_empty()).then(|| v.to_string()),
            "client_tls_sslmode" => cfg.client_tls_sslmode = v.parse()?,
            "client_tls_cert_file" => cfg.client_tls_cert_file = path(v),
            "client_tls_key_file" => cfg.client_tls_key_file = path(v),
            "client_tls_ca_file" => cfg.client_tls_ca_file = path(v),
            "client_tls_protocols" => cfg.client_tls_protocols = v.to_string(),
            "server_tls_sslmode" => cfg.server_tls_sslmode = v.parse()?,
            "server_tls_ca_file" => cfg.server_tls_ca_file = path(v),
            "server_tls_cert_file" => cfg.server_tls_cert_file = path(v),
            "server_tls_key_file" => cfg.server_tls_key_file = path(v),
            "server_tls_protocols" => cfg.server_tls_protocols = v.to_string(),
            "auth_query" => cfg.auth_query = v.to_string(),
            "auth_dbname" => cfg.auth_dbname = (!v.is_empty()).then(|| v.to_string()),
            "pool_mode" => cfg.pool_mode = pool_mode(v)?,
            "default_pool_size" => cfg.default_pool_size = whole(v)?,
            "min_pool_size" => cfg.min_pool_size = whole(v)?,
            "reserve_pool_size" => cfg.reserve_pool_size = whole(v)?,
            "reserve_pool_timeout" => cfg.reserve_pool_timeout = seconds(v)?,
            "max_db_connections" => cfg.max_db_connections = whole(v)?,
            "max_user_connections" => cfg.max_user_connections = whole(v)?,
            "max_client_conn" => cfg.max_client_conn = whole(v)?,
            "max_packet_size" => cfg.max_packet_size = whole(v)?,
            "max_prepared_statements" => cfg.max_prepared_statements = whole(v)?,
            "server_reset_query" => cfg.server_reset_query = v.to_string(),
            "server_reset_query_always" => cfg.server_reset_query_always = whole::<i64>(v)? != 0,
            // PgBouncer's one timeout covers connect and login; pgwolf times
            // them separately, so both get the value.
            "server_check_query" => cfg.server_check_query = v.to_string(),
            "server_check_delay" => cfg.server_check_delay = seconds(v)?,
            "server_connect_timeout" => {
                cfg.server_connect_timeout = seconds(v)?;
                cfg.server_login_timeout = cfg.server_connect_timeout;
            }
            "server_lifetime" => cfg.server_lifetime = seconds(v)?,
            "server_idle_timeout" => cfg.server_idle_timeout = seconds(v)?,
            "query_wait_timeout" => cfg.query_wait_timeout = seconds(v)?,
            "idle_transaction_timeout" => cfg.idle_transaction_timeout = seconds(v)?,
            "client_idle_timeout" => cfg.client_idle_timeout = seconds(v)?,
            "client_login_timeout" => cfg.client_login_timeout = seconds(v)?,
            "query_timeout" => cfg.query_timeout = seconds(v)?,
            "transaction_timeout" => cfg.transaction_timeout = seconds(v)?,
            // PgBouncer's units: seconds, and milliseconds for the user timeout.
            "tcp_keepalive" => cfg.tcp_keepalive = whole::<i64>(v)? != 0,
            "tcp_keepidle" => cfg.tcp_keepidle = seconds(v)?,
            "tcp_keepintvl" => cfg.tcp_keepintvl = seconds(v)?,
            "tcp_keepcnt" => cfg.tcp_keepcnt = whole(v)?,
            "tcp_user_timeout" => cfg.tcp_user_timeout = Duration::from_millis(whole(v)?),
            "ignore_startup_parameters" => {
                cfg.ignore_startup_parameters = comma_list(v).map(String::from).collect();
            }
            // pgwolf applies and restores every startup parameter, so the
            // list of extra ones to track says nothing it needs.
            "track_extra_parameters" => {}
            "log_connections" => cfg.log_connections = whole::<i64>(v)? != 0,
            "log_disconnections" => cfg.log_disconnections = whole::<i64>(v)? != 0,
            "log_stats" => cfg.log_stats = whole::<i64>(v)? != 0,
            "stats_period" => cfg.stats_period = seconds(v)?,
            "dns_max_ttl" => cfg.dns_max_ttl = seconds(v)?,
            "dns_nxdomain_ttl" => cfg.dns_nxdomain_ttl = seconds(v)?,
            "unix_socket_dir" => cfg.unix_socket_dir = v.to_string(),
            "unix_socket_mode" => cfg.unix_socket_mode = v.to_string(),
            "unix_socket_group" => cfg.unix_socket_group = v.to_string(),
            "admin_users" => cfg.admin_users = comma_list(v).map(String::from).collect(),
            "stats_users" => cfg.stats_users = comma_list(v).map(String::from).collect(),
            k if UNSUPPORTED_GLOBAL.contains(&k) => self.unsupported.global.push(k.to_string()),
            _ => return Err("not a PgBouncer setting".into()),
        }
        Ok(())
    }

    fn database(&mut self, line: &Line<'_>) -> Result<DatabaseConfig, String> {
        let mut db = DatabaseConfig {
            host: defaults::host(),
            port: defaults::port(),
            dbname: None,
            user: None,
            password: None,
            pool_mode: None,
            pool_size: None,
            min_pool_size: None,
            reserve_pool_size: None,
            max_db_connections: None,
            application_name: None,
            client_encoding: None,
            datestyle: None,
            timezone: None,
            cluster: None,
            role: None,
            load_balance_hosts: None,
        };
        let mut has_host = false;
        for (key, value) in parse_connstr(line.value).map_err(|m| line.err(m))? {
            let err = |m: String| line.err(format!("{key}: {m}"));
            match key.as_str() {
                "host" => {
                    db.host = value;
                    has_host = true;
                }
                "port" => db.port = whole(&value).map_err(err)?,
                "dbname" => db.dbname = Some(value),
                "user" => db.user = Some(value),
                "password" => db.password = Some(value),
                "pool_mode" => db.pool_mode = Some(pool_mode(&value).map_err(err)?),
                "pool_size" => db.pool_size = Some(whole(&value).map_err(err)?),
                "min_pool_size" => db.min_pool_size = Some(whole(&value).map_err(err)?),
                // `reserve_pool` is the older spelling; PgBouncer accepts both.
                "reserve_pool" | "reserve_pool_size" => {
                    db.reserve_pool_size = Some(whole(&value).map_err(err)?);
                }
                "max_db_connections" => {
                    db.max_db_connections = Some(whole(&value).map_err(err)?);
                }
                "application_name" => db.application_name = Some(value),
                "client_encoding" => db.client_encoding = Some(value),
                "datestyle" => db.datestyle = Some(value),
                "timezone" => db.timezone = Some(value),
                "load_balance_hosts" => {
                    db.load_balance_hosts = Some(load_balance(&value).map_err(err)?);
                }
                k if UNSUPPORTED_DATABASE.contains(&k) => {
                    self.unsupported.databases.push(format!("{}.{k}", line.key));
                }
                _ => return Err(err("not a PgBouncer connection parameter".into())),
            }
        }
        if !has_host {
            self.hostless.push(line.key.clone());
        }
        Ok(db)
    }

    fn user(&mut self, line: &Line<'_>) -> Result<UserConfig, String> {
        let mut user = UserConfig::default();
        for (key, value) in parse_connstr(line.value).map_err(|m| line.err(m))? {
            let err = |m: String| line.err(format!("{key}: {m}"));
            match key.as_str() {
                "pool_mode" => user.pool_mode = Some(pool_mode(&value).map_err(err)?),
                "pool_size" => user.pool_size = Some(whole(&value).map_err(err)?),
                "max_user_connections" => {
                    user.max_user_connections = Some(whole(&value).map_err(err)?);
                }
                k if UNSUPPORTED_USER.contains(&k) => {
                    self.unsupported.users.push(format!("{}.{k}", line.key));
                }
                _ => return Err(err("not a PgBouncer user setting".into())),
            }
        }
        Ok(user)
    }

    fn finish(mut self, path: &Path) -> (Config, Vec<String>) {
        let file = path.display();
        let mut warnings = Vec::new();
        let port = self.listen_port;
        let addrs: Vec<String> = comma_list(self.listen_addr.as_deref().unwrap_or(""))
            .map(|a| listen_entry(a, port))
            .collect();
        let socket_dir = self.cfg.unix_socket_dir.clone();
        if addrs.is_empty() && !socket_dir.is_empty() {
            // PgBouncer then listens on its socket only; so does pgwolf.
            self.cfg.listen = Vec::new();
            self.cfg.unix_socket_port = port;
        } else if addrs.is_empty() {
            let fallback = listen_entry(&defaults::host(), port);
            warnings.push(format!(
                "{file}: neither listen_addr nor unix_socket_dir is set, so PgBouncer \
                 would accept no connections; pgwolf listens on {fallback}"
            ));
            self.cfg.listen = vec![fallback];
        } else {
            self.cfg.listen = addrs;
        }
        for name in &self.hostless {
            if let Some(db) = self.cfg.databases.get_mut(name) {
                if !socket_dir.is_empty() {
                    db.host = socket_dir.clone();
                }
            }
        }
        if !self.hostless.is_empty() && socket_dir.is_empty() {
            warnings.push(format!(
                "{file}: [databases] {} have no host= and unix_socket_dir is empty, so \
                 PgBouncer would have no socket to use; pgwolf connects to {} over TCP",
                self.hostless.join(", "),
                defaults::host()
            ));
        }
        if let Some(list) = self.unsupported.describe() {
            warnings.push(format!(
                "{file}: ignored PgBouncer settings that pgwolf does not support: {list}"
            ));
        }
        (self.cfg, warnings)
    }
}

/// One `listen_addr` entry as `host:port`; `*` means all IPv4 addresses.
fn listen_entry(addr: &str, port: u16) -> String {
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    match addr {
        "*" => format!("0.0.0.0:{port}"),
        a if a.contains(':') => format!("[{a}]:{port}"),
        a => format!("{a}:{port}"),
    }
}

#[cfg(test)]
#[path = "pgbouncer_ini_tests.rs"]
mod tests;
