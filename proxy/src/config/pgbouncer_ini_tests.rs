//! Tests of the pgbouncer.ini import (`pgbouncer_ini.rs`).

use super::*;

fn import(text: &str) -> Result<(Config, Vec<String>), String> {
    from_ini_str(text, Path::new("pgbouncer.ini")).map_err(|e| e.to_string())
}

fn import_err(text: &str) -> String {
    import(text).unwrap_err()
}

const REALISTIC: &str = r#"
;; database name = connect string
[databases]
# app goes to the primary, with its own pool
app = host=10.0.0.5 port=5433 dbname=app_prod pool_size=40 min_pool_size=2 reserve_pool=5
reports = host=replica.internal dbname=app_prod user=reporter password='s3cret pass''word \'q\'' pool_mode=session max_db_connections=10 application_name=reports client_encoding=UTF8 datestyle='ISO, MDY' timezone=UTC
legacy = host=10.0.0.6 connect_query='SELECT 1'
* = host=10.0.0.5 port=5433

[users]
batch = pool_mode=statement pool_size=2 max_user_connections=4
slow = query_timeout=30

[pgbouncer]
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
listen_addr = *, ::1
listen_port = 6433
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = postgres
stats_users = stats, postgres
pool_mode = transaction
server_reset_query = DISCARD ALL
server_reset_query_always = 1
ignore_startup_parameters = extra_float_digits, options
max_client_conn = 2000
default_pool_size = 25
min_pool_size = 1
reserve_pool_size = 3
reserve_pool_timeout = 0.5
max_db_connections = 100
max_user_connections = 80
max_packet_size = 65536
max_prepared_statements = 50
server_lifetime = 1800
server_idle_timeout = 300
server_connect_timeout = 5
query_wait_timeout = 60
idle_transaction_timeout = 120
client_idle_timeout = 0
client_login_timeout = 30
server_tls_sslmode = prefer
pkt_buf = 8192
"#;

#[test]
fn host_lists_sockets_and_dns_settings() {
    let (cfg, warnings) = import(
        "[databases]\nha = host=10.0.0.5,10.0.0.6 load_balance_hosts=disable\n\
         rr = host=/run/postgresql,db.internal\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nauth_type = peer\nunix_socket_dir = /run/pgwolf\n\
         unix_socket_mode = 0770\nunix_socket_group = postgres\n\
         dns_max_ttl = 30\ndns_nxdomain_ttl = 2.5\n",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let ha = &cfg.databases["ha"];
    assert_eq!(ha.host, "10.0.0.5,10.0.0.6");
    assert_eq!(ha.load_balance_hosts, Some(LoadBalanceHosts::Disable));
    assert_eq!(cfg.databases["rr"].load_balance_hosts, None);
    assert_eq!(cfg.auth_type, AuthType::Peer);
    let socket = (
        cfg.unix_socket_dir.as_str(),
        cfg.unix_socket_mode.as_str(),
        cfg.unix_socket_group.as_str(),
    );
    assert_eq!(socket, ("/run/pgwolf", "0770", "postgres"));
    assert_eq!(cfg.dns_max_ttl, Duration::from_secs(30));
    assert_eq!(cfg.dns_nxdomain_ttl, Duration::from_millis(2500));
    crate::config::validate(&cfg).unwrap();
    assert!(
        import_err("[databases]\nx = host=a load_balance_hosts=random\n")
            .contains("not round-robin or disable")
    );
}

#[test]
fn realistic_ini_maps_to_config() {
    let (cfg, warnings) = import(REALISTIC).unwrap();
    assert_eq!(cfg.listen, ["0.0.0.0:6433", "[::1]:6433"]);
    assert_eq!(cfg.auth_type, AuthType::ScramSha256);
    assert_eq!(
        cfg.auth_file,
        Some(PathBuf::from("/etc/pgbouncer/userlist.txt"))
    );
    assert_eq!(cfg.pool_mode, PoolMode::Transaction);
    assert_eq!(cfg.server_reset_query, "DISCARD ALL");
    assert!(cfg.server_reset_query_always);
    assert_eq!(
        cfg.ignore_startup_parameters,
        ["extra_float_digits", "options"]
    );
    assert_eq!(
        (
            cfg.max_client_conn,
            cfg.default_pool_size,
            cfg.min_pool_size
        ),
        (2000, 25, 1)
    );
    assert_eq!(cfg.reserve_pool_size, 3);
    assert_eq!(cfg.reserve_pool_timeout, Duration::from_millis(500));
    assert_eq!(
        (cfg.max_db_connections, cfg.max_user_connections),
        (100, 80)
    );
    assert_eq!(cfg.max_packet_size, 65536);
    assert_eq!(cfg.max_prepared_statements, 50);
    assert_eq!(cfg.server_lifetime, Duration::from_secs(1800));
    assert_eq!(cfg.server_idle_timeout, Duration::from_secs(300));
    assert_eq!(cfg.server_connect_timeout, Duration::from_secs(5));
    assert_eq!(cfg.server_login_timeout, Duration::from_secs(5));
    assert_eq!(cfg.query_wait_timeout, Duration::from_secs(60));
    assert_eq!(cfg.idle_transaction_timeout, Duration::from_secs(120));
    assert_eq!(cfg.client_idle_timeout, Duration::ZERO);
    assert_eq!(cfg.client_login_timeout, Duration::from_secs(30));
    assert_eq!(cfg.server_tls_sslmode, super::super::SslMode::Prefer);
    // Not in the file, and PgBouncer's default equals pgwolf's.
    assert_eq!(cfg.shutdown_timeout, Config::default().shutdown_timeout);

    let app = &cfg.databases["app"];
    assert_eq!((app.host.as_str(), app.port), ("10.0.0.5", 5433));
    assert_eq!(app.dbname.as_deref(), Some("app_prod"));
    assert_eq!(
        (app.pool_size, app.min_pool_size, app.reserve_pool_size),
        (Some(40), Some(2), Some(5))
    );
    assert_eq!((app.user.as_ref(), app.pool_mode), (None, None));

    let reports = &cfg.databases["reports"];
    assert_eq!(reports.host, "replica.internal");
    assert_eq!(reports.port, 5432);
    assert_eq!(reports.user.as_deref(), Some("reporter"));
    assert_eq!(reports.password.as_deref(), Some("s3cret pass'word 'q'"));
    assert_eq!(reports.pool_mode, Some(PoolMode::Session));
    assert_eq!(reports.max_db_connections, Some(10));
    assert_eq!(reports.application_name.as_deref(), Some("reports"));
    assert_eq!(reports.client_encoding.as_deref(), Some("UTF8"));
    assert_eq!(reports.datestyle.as_deref(), Some("ISO, MDY"));
    assert_eq!(reports.timezone.as_deref(), Some("UTC"));

    let fallback = &cfg.databases["*"];
    assert_eq!((fallback.host.as_str(), fallback.port), ("10.0.0.5", 5433));
    assert_eq!(fallback.dbname, None);
    assert_eq!(cfg.database("anything"), Some(fallback));

    let batch = &cfg.users["batch"];
    assert_eq!(batch.pool_mode, Some(PoolMode::Statement));
    assert_eq!(
        (batch.pool_size, batch.max_user_connections),
        (Some(2), Some(4))
    );
    assert_eq!(cfg.users["slow"], UserConfig::default());
    assert_eq!(cfg.admin_users, ["postgres"]);
    assert_eq!(cfg.stats_users, ["stats", "postgres"]);

    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0],
        "pgbouncer.ini: ignored PgBouncer settings that pgwolf does not support: \
         [pgbouncer] logfile, pidfile, pkt_buf; \
         [databases] legacy.connect_query; [users] slow.query_timeout"
    );
    super::super::validate::validate(&cfg).unwrap();
}

#[test]
fn dead_peer_and_timeout_settings_in_pgbouncer_s_units() {
    let (cfg, warnings) = import(
        "[pgbouncer]\nlisten_addr = 127.0.0.1\ntcp_keepalive = 0\ntcp_keepidle = 7\n\
         tcp_keepintvl = 2\ntcp_keepcnt = 4\ntcp_user_timeout = 5000\n\
         query_timeout = 3.5\ntransaction_timeout = 60\n\
         server_check_delay = 10\nserver_check_query = select 42\n",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!cfg.tcp_keepalive);
    assert_eq!(cfg.tcp_keepidle, Duration::from_secs(7));
    assert_eq!(cfg.tcp_keepintvl, Duration::from_secs(2));
    assert_eq!(cfg.tcp_keepcnt, 4);
    assert_eq!(cfg.tcp_user_timeout, Duration::from_millis(5000));
    assert_eq!(cfg.query_timeout, Duration::from_millis(3500));
    assert_eq!(cfg.transaction_timeout, Duration::from_secs(60));
    assert_eq!(cfg.server_check_delay, Duration::from_secs(10));
    assert_eq!(cfg.server_check_query, "select 42");
    // An empty query turns the check off, as in PgBouncer.
    let (cfg, _) = import("[pgbouncer]\nlisten_addr = 127.0.0.1\nserver_check_query =\n").unwrap();
    assert_eq!(cfg.server_check_query, "");
    // Left out: pgwolf's, not the OS's hours.
    let (cfg, _) = import("[pgbouncer]\nlisten_addr = 127.0.0.1\n").unwrap();
    assert_eq!(cfg.tcp_user_timeout, Config::default().tcp_user_timeout);
}

#[test]
fn absent_keys_take_pgbouncer_defaults() {
    let (cfg, warnings) = import("[pgbouncer]\nlisten_addr = 127.0.0.1\n").unwrap();
    assert_eq!(cfg.pool_mode, PoolMode::Session);
    assert_eq!(cfg.auth_type, AuthType::Md5);
    assert_eq!(cfg.max_client_conn, 100);
    assert_eq!(cfg.listen, ["127.0.0.1:6432"]);
    assert_eq!(cfg.default_pool_size, Config::default().default_pool_size);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn no_listen_addr_or_host_means_the_socket() {
    // PgBouncer's defaults: its socket in /tmp only, and hostless
    // databases reached over the same directory.
    let (cfg, warnings) = import(
        "[databases]\nfoodb =\nbar = dbname=baz port=5433\n[pgbouncer]\nauth_type = trust\n",
    )
    .unwrap();
    assert!(cfg.listen.is_empty());
    assert_eq!(
        (cfg.unix_socket_dir.as_str(), cfg.unix_socket_port),
        ("/tmp", 6432)
    );
    assert_eq!(cfg.databases["foodb"].host, "/tmp");
    assert_eq!(
        (
            cfg.databases["bar"].host.as_str(),
            cfg.databases["bar"].port
        ),
        ("/tmp", 5433)
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    crate::config::validate(&cfg).unwrap();
}

#[test]
fn missing_listen_addr_and_host_warn_without_a_socket() {
    let (cfg, warnings) =
        import("[databases]\nfoodb =\nbar = dbname=baz\n[pgbouncer]\nunix_socket_dir =\n").unwrap();
    assert_eq!(cfg.listen, ["127.0.0.1:6432"]);
    assert_eq!(cfg.databases["foodb"].host, "127.0.0.1");
    assert_eq!(cfg.databases["bar"].dbname.as_deref(), Some("baz"));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("neither listen_addr nor unix_socket_dir"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("foodb, bar have no host="),
        "{}",
        warnings[1]
    );
}

#[test]
fn listen_addr_forms() {
    let (cfg, _) =
        import("[pgbouncer]\nlisten_addr = localhost, [fe80::1], 10.1.2.3\nlisten_port = 7000\n")
            .unwrap();
    assert_eq!(
        cfg.listen,
        ["localhost:7000", "[fe80::1]:7000", "10.1.2.3:7000"]
    );
}

#[test]
fn peers_section_is_reported() {
    let (_, warnings) = import("[peers]\n1 = host=/tmp/a\n[pgbouncer]\nlisten_addr = *\n").unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].ends_with("the [peers] section"),
        "{}",
        warnings[0]
    );
}

#[test]
fn quoted_database_names_and_values() {
    let (cfg, _) =
        import("[databases]\n\"my \"\"odd\"\" db\" = host=h password='a\\b' dbname = 'x y'\n")
            .unwrap();
    let db = &cfg.databases["my \"odd\" db"];
    assert_eq!(db.password.as_deref(), Some("a\\b"));
    assert_eq!(db.dbname.as_deref(), Some("x y"));
}

#[test]
fn comments_only_at_line_start() {
    let (cfg, _) = import(
        "  ; indented comment\n[pgbouncer] ; trailing\nserver_reset_query = SELECT 1 ; not a comment\n",
    )
    .unwrap();
    assert_eq!(cfg.server_reset_query, "SELECT 1 ; not a comment");
}

#[test]
fn times_are_seconds() {
    assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
    assert_eq!(seconds("3600.0"), Ok(Duration::from_secs(3600)));
    assert_eq!(seconds("0"), Ok(Duration::ZERO));
    for bad in ["-1", "30s", "", "NaN", "inf", "1e400"] {
        assert!(seconds(bad).is_err(), "{bad}");
    }
    let msg = import_err("[pgbouncer]\n\nquery_wait_timeout = 2m\n");
    assert!(
        msg.starts_with("pgbouncer.ini: line 3: [pgbouncer] query_wait_timeout:"),
        "{msg}"
    );
    assert!(msg.contains("`2m`"), "{msg}");
}

#[test]
fn bad_numbers_name_section_and_key() {
    let msg = import_err("[pgbouncer]\ndefault_pool_size = twenty\n");
    assert!(
        msg.contains("line 2: [pgbouncer] default_pool_size:"),
        "{msg}"
    );
    assert!(msg.contains("`twenty`"), "{msg}");
    let msg = import_err("[pgbouncer]\nmax_client_conn = -1\n");
    assert!(msg.contains("[pgbouncer] max_client_conn"), "{msg}");
    let msg = import_err("[databases]\n\napp = host=h pool_size=lots\n");
    assert!(msg.contains("line 3: [databases] app: pool_size:"), "{msg}");
    let msg = import_err("[databases]\napp = port=70000\n");
    assert!(msg.contains("[databases] app: port:"), "{msg}");
    let msg = import_err("[users]\nbob = pool_size=x\n");
    assert!(msg.contains("line 2: [users] bob: pool_size:"), "{msg}");
}

#[test]
fn broken_lines_give_line_numbers() {
    for (text, expected) in [
        (
            "[pgbouncer]\nlisten_port 6432\n",
            "line 2: expected `key = value`",
        ),
        (
            "[pgbouncer\n",
            "line 1: `[pgbouncer` is missing its closing `]`",
        ),
        (
            "listen_port = 1\n",
            "line 1: `listen_port` appears before any [section]",
        ),
        ("[pgbouncer]\n[extra]\n", "line 2: unknown section [extra]"),
        (
            "[databases]\n\"app = host=h\n",
            "line 2: unterminated quoted key",
        ),
        (
            "[pgbouncer]\n%include other.ini\n",
            "line 2: %include is not supported",
        ),
        (
            "[databases]\napp = host='db\n",
            "line 2: [databases] app: host: unterminated quoted value",
        ),
        (
            "[databases]\napp = host\n",
            "line 2: [databases] app: expected key=value at `host`",
        ),
        (
            "[databases]\napp = host=\n",
            "line 2: [databases] app: host: empty value",
        ),
        (
            "[databases]\napp = host='a'b\n",
            "line 2: [databases] app: host: unexpected `b`",
        ),
    ] {
        let msg = import_err(text);
        assert!(
            msg.starts_with(&format!("pgbouncer.ini: {expected}")),
            "{text:?} gave {msg}"
        );
    }
}

#[test]
fn unknown_keys_are_errors() {
    let msg = import_err("[pgbouncer]\nshutdown_timeout = 10\n");
    assert!(
        msg.contains("line 2: [pgbouncer] shutdown_timeout: not a PgBouncer setting"),
        "{msg}"
    );
    let msg = import_err("[databases]\napp = host=h sslmode=require\n");
    assert!(
        msg.contains("[databases] app: sslmode: not a PgBouncer connection parameter"),
        "{msg}"
    );
    let msg = import_err("[users]\nbob = pool_sise=3\n");
    assert!(
        msg.contains("[users] bob: pool_sise: not a PgBouncer user setting"),
        "{msg}"
    );
}

#[test]
fn auth_and_pool_mode_values() {
    let (cfg, _) = import("[pgbouncer]\nauth_type = TRUST\npool_mode = Statement\n").unwrap();
    assert_eq!(
        (cfg.auth_type, cfg.pool_mode),
        (AuthType::Trust, PoolMode::Statement)
    );
    let (cfg, _) =
        import("[pgbouncer]\nauth_type = hba\nauth_hba_file = /etc/pgbouncer/hba.conf\n").unwrap();
    assert_eq!(cfg.auth_type, AuthType::Hba);
    assert_eq!(
        cfg.auth_hba_file,
        Some(PathBuf::from("/etc/pgbouncer/hba.conf"))
    );
    let (cfg, _) = import(
        "[pgbouncer]\nauth_type = cert\nclient_tls_sslmode = verify-full\n\
         client_tls_ca_file = ca.crt\nserver_tls_sslmode = verify-ca\n",
    )
    .unwrap();
    assert_eq!(cfg.auth_type, AuthType::Cert);
    assert_eq!(cfg.client_tls_sslmode, super::super::SslMode::VerifyFull);
    assert_eq!(cfg.client_tls_ca_file, Some(PathBuf::from("ca.crt")));
    assert_eq!(cfg.server_tls_sslmode, super::super::SslMode::VerifyCa);
    assert!(
        import_err("[pgbouncer]\nserver_tls_sslmode = maybe\n").contains("unknown sslmode `maybe`")
    );
    for unsupported in ["any", "pam", "ldap"] {
        let msg = import_err(&format!("[pgbouncer]\nauth_type = {unsupported}\n"));
        assert!(
            msg.contains(&format!("auth_type: `{unsupported}` is not supported")),
            "{msg}"
        );
    }
    assert!(import_err("[pgbouncer]\nauth_type = crypt\n").contains("not a PgBouncer auth_type"));
    assert!(
        import_err("[databases]\na = pool_mode=sometimes\n").contains("[databases] a: pool_mode")
    );
}

#[test]
fn later_lines_override_earlier_ones() {
    let (cfg, _) =
        import("[pgbouncer]\ndefault_pool_size = 5\n[pgbouncer]\ndefault_pool_size = 6\n").unwrap();
    assert_eq!(cfg.default_pool_size, 6);
}

#[test]
fn connstr_escapes() {
    let pairs = parse_connstr(r"a=1  b='x \\ y' c='it''s' d = plain").unwrap();
    let expected = [("a", "1"), ("b", r"x \ y"), ("c", "it's"), ("d", "plain")];
    let got: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, expected);
}
