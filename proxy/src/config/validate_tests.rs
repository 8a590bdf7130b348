//! Tests of config validation (`validate.rs`).

use super::*;
use std::path::PathBuf;

/// A config that passes, to break one rule at a time.
fn valid() -> Config {
    let mut cfg = Config {
        auth_file: Some(PathBuf::from("userlist.txt")),
        ..Config::default()
    };
    cfg.databases.insert("app".into(), db());
    cfg.users.insert("bob".into(), UserConfig::default());
    cfg
}

fn db() -> DatabaseConfig {
    toml::from_str("").unwrap()
}

/// The key of the first problem, or None when the config is valid.
fn failing_key(cfg: &Config) -> Option<String> {
    match validate(cfg) {
        Ok(()) => None,
        Err(ConfigError::Invalid { key, .. }) => Some(key),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

fn message(cfg: &Config) -> String {
    validate(cfg).unwrap_err().to_string()
}

#[test]
fn baseline_and_defaults_with_trust_are_valid() {
    assert_eq!(failing_key(&valid()), None);
    let trust = Config {
        auth_type: AuthType::Trust,
        ..Config::default()
    };
    assert_eq!(failing_key(&trust), None);
}

#[test]
fn listen_must_not_be_empty() {
    let cfg = Config {
        listen: vec![],
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("listen"));
}

#[test]
fn listen_accepts_ip_ipv6_and_host_names() {
    for ok in [
        "127.0.0.1:6432",
        "0.0.0.0:0",
        "[::1]:6432",
        "[::]:6432",
        "localhost:6432",
        "pgwolf-0.pgwolf.svc.cluster.local:6432",
    ] {
        let cfg = Config {
            listen: vec![ok.into()],
            ..valid()
        };
        assert_eq!(failing_key(&cfg), None, "{ok}");
    }
}

#[test]
fn listen_rejects_bad_shapes() {
    for bad in [
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "::1:6432",
        "[::1:6432",
        "[nope]:6432",
        ":6432",
        "bad host:6432",
        "-bad:6432",
    ] {
        let cfg = Config {
            listen: vec!["127.0.0.1:6432".into(), bad.into()],
            ..valid()
        };
        assert_eq!(failing_key(&cfg).as_deref(), Some("listen[1]"), "{bad}");
        assert!(message(&cfg).contains(bad), "{bad}: {}", message(&cfg));
    }
}

#[test]
fn password_auth_requires_auth_file() {
    for auth_type in [AuthType::ScramSha256, AuthType::Md5, AuthType::Plain] {
        let cfg = Config {
            auth_type,
            auth_file: None,
            ..valid()
        };
        assert_eq!(failing_key(&cfg).as_deref(), Some("auth_file"));
        let msg = message(&cfg);
        assert!(msg.contains(auth_type_name(auth_type)), "{msg}");
        assert!(msg.contains("needs an auth_file"), "{msg}");
    }
    let cfg = Config {
        auth_type: AuthType::Trust,
        auth_file: None,
        ..valid()
    };
    assert_eq!(failing_key(&cfg), None);
    let cfg = Config {
        auth_file: Some(PathBuf::new()),
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("auth_file"));
}

#[test]
fn default_pool_size_at_least_one() {
    let cfg = Config {
        default_pool_size: 0,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("default_pool_size"));
}

#[test]
fn min_pool_size_within_pool_size() {
    let cfg = Config {
        min_pool_size: 21,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("min_pool_size"));
    let cfg = Config {
        min_pool_size: 20,
        ..valid()
    };
    assert_eq!(failing_key(&cfg), None);
}

#[test]
fn max_client_conn_at_least_one() {
    let cfg = Config {
        max_client_conn: 0,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("max_client_conn"));
}

#[test]
fn max_packet_size_range() {
    for (size, ok) in [
        (1023, false),
        (1024, true),
        (1 << 30, true),
        ((1 << 30) + 1, false),
        (u32::MAX, false),
    ] {
        let cfg = Config {
            max_packet_size: size,
            ..valid()
        };
        let expected = (!ok).then(|| "max_packet_size".to_string());
        assert_eq!(failing_key(&cfg), expected, "{size}");
    }
}

#[test]
fn login_timeouts_non_zero() {
    let cfg = Config {
        server_connect_timeout: Duration::ZERO,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("server_connect_timeout"));
    let cfg = Config {
        server_login_timeout: Duration::ZERO,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("server_login_timeout"));
    let cfg = Config {
        client_login_timeout: Duration::ZERO,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("client_login_timeout"));
    // Timeouts documented as "0 = never" stay allowed.
    let cfg = Config {
        server_lifetime: Duration::ZERO,
        server_idle_timeout: Duration::ZERO,
        query_wait_timeout: Duration::ZERO,
        shutdown_timeout: Duration::ZERO,
        ..valid()
    };
    assert_eq!(failing_key(&cfg), None);
}

#[test]
fn worker_threads_bounded() {
    let cfg = Config {
        worker_threads: 5000,
        ..valid()
    };
    assert_eq!(failing_key(&cfg).as_deref(), Some("worker_threads"));
    for n in [0, 1, 64] {
        let cfg = Config {
            worker_threads: n,
            ..valid()
        };
        assert_eq!(failing_key(&cfg), None, "worker_threads = {n}");
    }
}

#[test]
fn ignore_startup_parameters_entries_not_empty() {
    let cfg = Config {
        ignore_startup_parameters: vec!["options".into(), " ".into()],
        ..valid()
    };
    assert_eq!(
        failing_key(&cfg).as_deref(),
        Some("ignore_startup_parameters")
    );
}

#[test]
fn database_names() {
    for (name, expected) in [
        ("", "databases.\"\""),
        ("pgbouncer", "databases.pgbouncer"),
        ("pgwolf", "databases.pgwolf"),
    ] {
        let mut cfg = valid();
        cfg.databases.insert(name.into(), db());
        assert_eq!(failing_key(&cfg).as_deref(), Some(expected), "{name:?}");
    }
    let mut cfg = valid();
    cfg.databases.insert("*".into(), db());
    cfg.databases.insert("my.db".into(), db());
    assert_eq!(failing_key(&cfg), None);
}

#[test]
fn database_host_and_port() {
    for (host, ok) in [
        ("", false),
        ("/var/run/postgresql", true),
        ("@abstract", false),
        ("a,b", true),
        ("/run/postgresql, 10.0.0.2", true),
        ("a,,b", false),
        ("a,@b", false),
        ("a b", false),
        ("db.internal", true),
        ("::1", true),
    ] {
        let mut cfg = valid();
        cfg.databases.get_mut("app").unwrap().host = host.into();
        let expected = (!ok).then(|| "databases.app.host".to_string());
        assert_eq!(failing_key(&cfg), expected, "{host:?}");
    }
    let mut cfg = valid();
    cfg.databases.get_mut("app").unwrap().port = 0;
    assert_eq!(failing_key(&cfg).as_deref(), Some("databases.app.port"));
}

#[test]
fn database_optional_names_not_empty() {
    let mut cfg = valid();
    cfg.databases.get_mut("app").unwrap().dbname = Some(String::new());
    assert_eq!(failing_key(&cfg).as_deref(), Some("databases.app.dbname"));
    let mut cfg = valid();
    cfg.databases.get_mut("app").unwrap().user = Some(String::new());
    assert_eq!(failing_key(&cfg).as_deref(), Some("databases.app.user"));
}

#[test]
fn database_pool_sizes() {
    let mut cfg = valid();
    cfg.databases.get_mut("app").unwrap().pool_size = Some(0);
    assert_eq!(
        failing_key(&cfg).as_deref(),
        Some("databases.app.pool_size")
    );

    let mut cfg = valid();
    let app = cfg.databases.get_mut("app").unwrap();
    app.pool_size = Some(5);
    app.min_pool_size = Some(6);
    assert_eq!(
        failing_key(&cfg).as_deref(),
        Some("databases.app.min_pool_size")
    );

    // A global min_pool_size larger than this database's pool.
    let mut cfg = Config {
        min_pool_size: 10,
        ..valid()
    };
    cfg.databases.get_mut("app").unwrap().pool_size = Some(5);
    assert_eq!(
        failing_key(&cfg).as_deref(),
        Some("databases.app.pool_size")
    );
    cfg.databases.get_mut("app").unwrap().min_pool_size = Some(5);
    assert_eq!(failing_key(&cfg), None);
}

#[test]
fn user_rules() {
    let mut cfg = valid();
    cfg.users.get_mut("bob").unwrap().pool_size = Some(0);
    assert_eq!(failing_key(&cfg).as_deref(), Some("users.bob.pool_size"));
    let mut cfg = valid();
    cfg.users.insert(String::new(), UserConfig::default());
    assert_eq!(failing_key(&cfg).as_deref(), Some("users.\"\""));
}

#[test]
fn first_problem_wins_deterministically() {
    let mut cfg = Config {
        default_pool_size: 0,
        max_client_conn: 0,
        ..valid()
    };
    cfg.databases
        .insert("zzz".into(), DatabaseConfig { port: 0, ..db() });
    cfg.databases
        .insert("aaa".into(), DatabaseConfig { port: 0, ..db() });
    assert_eq!(failing_key(&cfg).as_deref(), Some("default_pool_size"));
    cfg.default_pool_size = 1;
    cfg.max_client_conn = 1;
    assert_eq!(failing_key(&cfg).as_deref(), Some("databases.aaa.port"));
}

#[test]
fn keys_quote_odd_names() {
    assert_eq!(key("databases", "app", "port"), "databases.app.port");
    assert_eq!(key("databases", "*", "port"), "databases.\"*\".port");
    assert_eq!(key("databases", "a.b", ""), "databases.\"a.b\"");
}
