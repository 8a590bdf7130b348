//! Reading a config file: TOML natively, PgBouncer ini by extension or content.
//!
//! This is the only file in `config` that touches the file system: it reads the
//! file, picks the parser, resolves relative paths against the file's
//! directory and runs `validate`. Parsers and the validator stay pure.

use super::pgbouncer_ini;
use super::validate::validate;
use super::Config;
use std::path::{Path, PathBuf};

/// A parsed, validated config and the warnings worth one log line each
/// (e.g. PgBouncer settings that pgwolf does not support).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Which parser a file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    PgBouncerIni,
}

impl Format {
    /// The extension decides when it is `.ini` or `.toml`; otherwise a
    /// `[pgbouncer]` section marks an ini file (PgBouncer configs are often
    /// named without an extension). A TOML file cannot legitimately contain
    /// that table, since `Config` has no `pgbouncer` key.
    fn detect(path: &Path, text: &str) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("ini") => Format::PgBouncerIni,
            Some("toml") => Format::Toml,
            _ if text.lines().any(|l| l.trim() == "[pgbouncer]") => Format::PgBouncerIni,
            _ => Format::Toml,
        }
    }
}

/// Read, parse and validate the config file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let (mut config, warnings) = match Format::detect(path, &text) {
        Format::Toml => (from_toml_str(&text, path)?, Vec::new()),
        Format::PgBouncerIni => pgbouncer_ini::from_ini_str(&text, path)?,
    };
    resolve_relative_paths(&mut config, path);
    validate(&config)?;
    let mut warnings = warnings;
    warnings.extend(unsafe_settings(&config));
    Ok(Loaded { config, warnings })
}

/// Settings that are valid but let in what PostgreSQL would refuse: one
/// warning each, at start and at every reload.
fn unsafe_settings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let query = cfg.auth_query.to_ascii_lowercase();
    let reads_catalog = query.contains("pg_shadow") || query.contains("pg_authid");
    let checks_expiry = query.contains("valuntil") || query.contains("validuntil");
    if cfg.auth_user.is_some() && reads_catalog && !checks_expiry {
        out.push(
            "auth_query reads pg_shadow or pg_authid without checking VALID UNTIL: a role whose \
             password expired still logs in through pgwolf while a server connection of its is \
             pooled (PgBouncer's CVE-2025-2291); use the default auth_query or the lookup \
             function in docs/security.md"
                .to_string(),
        );
    }
    out
}

/// Parse PgBouncer ini text (no file access), with the import's warnings;
/// not validated yet.
pub fn from_pgbouncer_ini_str(
    text: &str,
    path: &Path,
) -> Result<(Config, Vec<String>), ConfigError> {
    pgbouncer_ini::from_ini_str(text, path)
}

/// Parse TOML text (no file access); relative paths stay relative.
pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    // toml's message already carries line, column, a caret excerpt and the
    // offending key (e.g. "unknown field `bogus`"), so it is passed on whole.
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Relative `auth_file` and `auth_hba_file` paths mean "next to the config file", so that a
/// config directory can be moved or mounted anywhere and the service's working
/// directory does not matter. (PgBouncer uses the working directory.)
fn resolve_relative_paths(config: &mut Config, config_path: &Path) {
    let Some(dir) = config_path.parent() else {
        return;
    };
    for file in [
        config.auth_file.as_mut(),
        config.auth_hba_file.as_mut(),
        config.client_tls_cert_file.as_mut(),
        config.client_tls_key_file.as_mut(),
        config.client_tls_ca_file.as_mut(),
        config.server_tls_ca_file.as_mut(),
        config.server_tls_cert_file.as_mut(),
        config.server_tls_key_file.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if file.is_relative() {
            *file = dir.join(&*file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthType, DatabaseConfig, PoolMode, UserConfig};
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_toml_str(text, Path::new("test.toml"))
    }

    fn parse_err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_toml_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn full_toml_round_trips() {
        let mut cfg = Config {
            listen: vec!["0.0.0.0:6432".into(), "[::1]:6432".into()],
            auth_type: AuthType::Md5,
            auth_file: Some(PathBuf::from("/etc/pgwolf/userlist.txt")),
            pool_mode: PoolMode::Session,
            default_pool_size: 30,
            min_pool_size: 2,
            reserve_pool_size: 5,
            reserve_pool_timeout: Duration::from_millis(2500),
            max_db_connections: 100,
            max_user_connections: 50,
            max_client_conn: 5000,
            max_packet_size: 64 << 20,
            server_reset_query: "DEALLOCATE ALL".into(),
            server_reset_query_always: true,
            server_connect_timeout: Duration::from_secs(5),
            server_login_timeout: Duration::from_secs(7),
            server_lifetime: Duration::from_secs(1800),
            server_idle_timeout: Duration::ZERO,
            query_wait_timeout: Duration::from_secs(30),
            idle_transaction_timeout: Duration::from_secs(60),
            client_idle_timeout: Duration::from_secs(3600),
            client_login_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(20),
            ignore_startup_parameters: vec!["extra_float_digits".into(), "options".into()],
            ..Config::default()
        };
        cfg.databases.insert(
            "app".into(),
            DatabaseConfig {
                host: "db.internal".into(),
                port: 5433,
                dbname: Some("app_prod".into()),
                user: Some("app_owner".into()),
                password: Some("pass with spaces".into()),
                pool_mode: Some(PoolMode::Statement),
                pool_size: Some(10),
                min_pool_size: Some(1),
                reserve_pool_size: Some(2),
                max_db_connections: Some(40),
                application_name: Some("app-via-pgwolf".into()),
                client_encoding: Some("UTF8".into()),
                datestyle: Some("ISO, MDY".into()),
                timezone: Some("UTC".into()),
                cluster: None,
                role: None,
                load_balance_hosts: None,
            },
        );
        let fallback: DatabaseConfig = toml::from_str("").unwrap();
        cfg.databases.insert("*".into(), fallback);
        cfg.users.insert(
            "report".into(),
            UserConfig {
                pool_mode: Some(PoolMode::Session),
                pool_size: Some(3),
                max_user_connections: Some(6),
            },
        );
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(parse(&text).unwrap(), cfg, "TOML was:\n{text}");
    }

    #[test]
    fn database_defaults_fill_host_and_port() {
        let cfg = parse("[databases.app]\ndbname = \"x\"\n").unwrap();
        let db = &cfg.databases["app"];
        assert_eq!(db.host, "127.0.0.1");
        assert_eq!(db.port, 5432);
        assert_eq!(db.dbname.as_deref(), Some("x"));
    }

    #[test]
    fn unknown_top_level_key_is_named_with_its_line() {
        let msg = parse_err("default_pool_size = 5\nbogus_setting = 1\n");
        assert!(msg.contains("test.toml"), "{msg}");
        assert!(msg.contains("bogus_setting"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unknown_database_key_is_named() {
        let msg = parse_err("[databases.app]\nhost = \"h\"\nhots = \"typo\"\n");
        assert!(msg.contains("hots"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn unknown_user_key_is_named() {
        let msg = parse_err("[users.bob]\npool_sise = 3\n");
        assert!(msg.contains("pool_sise"), "{msg}");
    }

    #[test]
    fn bad_duration_is_rejected() {
        let msg = parse_err("server_lifetime = \"10 parsecs\"\n");
        assert!(msg.contains("server_lifetime"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        // A bare number is not a duration: the unit must be explicit.
        assert!(parse("query_wait_timeout = 30\n").is_err());
    }

    #[test]
    fn durations_use_humantime() {
        let cfg = parse("query_wait_timeout = \"500ms\"\nserver_lifetime = \"1h\"\nclient_idle_timeout = \"0s\"\n")
            .unwrap();
        assert_eq!(cfg.query_wait_timeout, Duration::from_millis(500));
        assert_eq!(cfg.server_lifetime, Duration::from_secs(3600));
        assert_eq!(cfg.client_idle_timeout, Duration::ZERO);
    }

    #[test]
    fn bad_enum_value_is_rejected() {
        let msg = parse_err("pool_mode = \"sessions\"\n");
        assert!(msg.contains("sessions"), "{msg}");
        assert!(parse("auth_type = \"scram-sha-256\"\n").is_ok());
    }

    #[test]
    fn format_detection() {
        let ini = "[pgbouncer]\nlisten_port = 6432\n";
        assert_eq!(Format::detect(Path::new("a.ini"), ""), Format::PgBouncerIni);
        assert_eq!(Format::detect(Path::new("a.INI"), ""), Format::PgBouncerIni);
        assert_eq!(Format::detect(Path::new("a.toml"), ini), Format::Toml);
        assert_eq!(
            Format::detect(Path::new("pgbouncer"), ini),
            Format::PgBouncerIni
        );
        assert_eq!(
            Format::detect(Path::new("a.conf"), "listen = []"),
            Format::Toml
        );
    }

    #[test]
    fn load_resolves_auth_file_against_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgwolf.toml");
        std::fs::write(&path, "auth_file = \"users.txt\"\n").unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.config.auth_file, Some(dir.path().join("users.txt")));
        assert!(loaded.warnings.is_empty());

        std::fs::write(&path, "auth_file = \"/abs/users.txt\"\n").unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(
            loaded.config.auth_file,
            Some(PathBuf::from("/abs/users.txt"))
        );
    }

    #[test]
    fn load_sniffs_ini_without_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bouncer.conf");
        std::fs::write(
            &path,
            "[databases]\napp = host=db\n[pgbouncer]\nlisten_addr = *\nauth_type = trust\nlogfile = /x\n",
        )
        .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.config.databases["app"].host, "db");
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn load_validates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgwolf.toml");
        std::fs::write(&path, "auth_type = \"trust\"\ndefault_pool_size = 0\n").unwrap();
        match load(&path) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "default_pool_size"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_names_it() {
        let err = load(Path::new("/nonexistent/pgwolf.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/pgwolf.toml"));
    }

    /// docs/configuration.md must list every global setting with the
    /// default from defaults.rs, written as TOML.
    #[test]
    fn docs_match_defaults() {
        let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let doc = std::fs::read_to_string(doc_path).unwrap();
        let documented_default = |key: &str| -> Option<String> {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))?;
            Some(row.split('|').nth(3)?.trim().to_string())
        };
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (key, value) in defaults.as_table().unwrap() {
            if value.is_table() {
                continue; // databases, users: documented as sections
            }
            assert_eq!(
                documented_default(key),
                Some(format!("`{value}`")),
                "default of `{key}` in docs/configuration.md"
            );
        }
        assert_eq!(
            documented_default("host").as_deref(),
            Some("`\"127.0.0.1\"`")
        );
        assert_eq!(documented_default("port").as_deref(), Some("`5432`"));
    }

    #[test]
    fn a_lookup_that_ignores_valid_until_is_warned_about() {
        let mut cfg = Config {
            auth_user: Some("pgbouncer".into()),
            ..Config::default()
        };
        assert!(unsafe_settings(&cfg).is_empty(), "the default checks it");
        cfg.auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1".into();
        let w = unsafe_settings(&cfg);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("CVE-2025-2291"), "{w:?}");
        cfg.auth_query = "SELECT uname, phash FROM pgwolf.user_lookup($1)".into();
        assert!(
            unsafe_settings(&cfg).is_empty(),
            "a function is the user's to check"
        );
        cfg.auth_user = None;
        cfg.auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1".into();
        assert!(
            unsafe_settings(&cfg).is_empty(),
            "no lookup without auth_user"
        );
    }

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples")
            .join(name)
    }

    #[test]
    fn example_toml_loads() {
        let loaded = load(&example("pgwolf.toml")).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(loaded.config.databases.contains_key("app"));
        let auth_file = loaded.config.auth_file.unwrap();
        assert!(auth_file.is_file(), "{}", auth_file.display());
    }

    #[test]
    fn example_ini_loads() {
        let loaded = load(&example("pgbouncer.ini")).unwrap();
        assert!(loaded.config.databases.contains_key("app"));
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        let auth_file = loaded.config.auth_file.unwrap();
        assert!(auth_file.is_file(), "{}", auth_file.display());
    }
}
