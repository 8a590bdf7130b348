//! The command line: `pgwolf check --config FILE`, config errors that name
//! the key, PgBouncer ini import, and startup with a bad config.

use pgwolf_tests::fixture::userlist;
use pgwolf_tests::proxy::run_pgwolf;
use pgwolf_tests::{within, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER};
use std::path::{Path, PathBuf};
use std::process::Output;

const GOOD: &str = r#"
listen = ["127.0.0.1:6432"]
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
pool_mode = "transaction"
default_pool_size = 10
server_idle_timeout = "5m"
query_wait_timeout = "30s"

[databases.appdb]
host = "127.0.0.1"
port = 5432
dbname = "appdb"
pool_size = 5

[users.app]
pool_mode = "session"
"#;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("userlist.txt"),
            userlist(&[(APP_USER, APP_PASSWORD)]),
        )
        .unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        // Relative paths in configs resolve against the config's dir; make
        // the test independent of that by using absolute ones.
        let text = text.replace(
            "\"userlist.txt\"",
            &format!("{:?}", self.dir.path().join("userlist.txt")),
        );
        let text = text.replace(
            "= userlist.txt",
            &format!("= {}", self.dir.path().join("userlist.txt").display()),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn check(path: &Path) -> Output {
    run_pgwolf(&["check".as_ref(), "--config".as_ref(), path.as_os_str()])
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` fails and its stderr names `key`.
fn assert_rejected(config: &str, key: &str) {
    let files = Files::new();
    let path = files.write("bad.toml", config);
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "check accepted a config with bad `{key}`:\n{stdout}{stderr}"
    );
    assert!(
        stderr.contains(key),
        "stderr does not name `{key}`:\n{stderr}"
    );
}

#[test]
fn check_accepts_a_good_config() {
    let files = Files::new();
    let path = files.write("good.toml", GOOD);
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check rejected a good config ({}):\n{stdout}{stderr}",
        out.status
    );
}

#[test]
fn check_rejects_unknown_top_level_key() {
    assert_rejected(
        &GOOD.replace("default_pool_size = 10", "default_pool_sise = 10"),
        "default_pool_sise",
    );
}

#[test]
fn check_rejects_unknown_key_in_a_database() {
    assert_rejected(
        &GOOD.replace("host = \"127.0.0.1\"", "hots = \"127.0.0.1\""),
        "hots",
    );
}

#[test]
fn check_rejects_bad_enum_value() {
    assert_rejected(
        &GOOD.replace("pool_mode = \"transaction\"", "pool_mode = \"sometimes\""),
        "pool_mode",
    );
}

#[test]
fn check_rejects_bad_duration() {
    assert_rejected(
        &GOOD.replace("\"5m\"", "\"5 parsecs\""),
        "server_idle_timeout",
    );
}

#[test]
fn check_rejects_wrong_type() {
    assert_rejected(
        &GOOD.replace("default_pool_size = 10", "default_pool_size = \"ten\""),
        "default_pool_size",
    );
}

#[test]
fn check_rejects_missing_file() {
    let out = check(Path::new("/nonexistent/pgwolf.toml"));
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/pgwolf.toml"), "{stderr}");
}

const INI: &str = "\
;; a PgBouncer config
[databases]
appdb = host=127.0.0.1 port=5432 dbname=appdb

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
auth_type = scram-sha-256
auth_file = userlist.txt
pool_mode = transaction
default_pool_size = 10
max_client_conn = 500
stats_period = 60
log_pooler_errors = 1
dns_zone_check_period = 0
syslog_facility = daemon
";

#[test]
fn check_accepts_pgbouncer_ini_and_names_unsupported_settings_once() {
    let files = Files::new();
    let path = files.write("pgbouncer.ini", INI);
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check rejected pgbouncer.ini ({}):\n{stdout}{stderr}",
        out.status
    );
    let all = format!("{stdout}\n{stderr}");
    let unsupported = [
        "log_pooler_errors",
        "dns_zone_check_period",
        "syslog_facility",
    ];
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| unsupported.iter().any(|k| l.contains(k)))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one warning line naming the unsupported settings:\n{all}"
    );
    for key in unsupported {
        assert!(
            lines[0].contains(key),
            "warning does not name {key}: {}",
            lines[0]
        );
    }
    for supported in [
        "max_client_conn",
        "default_pool_size",
        "pool_mode",
        "stats_period",
    ] {
        assert!(
            !lines[0].contains(supported),
            "supported {supported} listed as unsupported: {}",
            lines[0]
        );
    }
}

#[test]
fn check_rejects_unknown_pgbouncer_setting() {
    let files = Files::new();
    let path = files.write(
        "pgbouncer.ini",
        &INI.replace("max_client_conn", "max_clients_conn"),
    );
    let out = check(&path);
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "check accepted an unknown PgBouncer setting"
    );
    assert!(stderr.contains("max_clients_conn"), "{stderr}");
}

#[test]
fn startup_with_a_bad_config_exits_and_names_the_key() {
    let result = Pgwolf::try_start(
        &GOOD
            .replace("listen = [\"127.0.0.1:6432\"]\n", "")
            .replace("default_pool_size", "pool_size_default"),
        "",
    );
    let log = result.expect_err("pgwolf started with an unknown key");
    assert!(log.contains("pool_size_default"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_clients_with_a_pgbouncer_ini() {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    let ini = format!(
        "[databases]\nappdb = host=127.0.0.1 port={} dbname=appdb\n\n[pgbouncer]\nauth_type = scram-sha-256\npool_mode = transaction\ndefault_pool_size = 4\n",
        pg.port()
    );
    let proxy = Pgwolf::start_ini(&ini, &userlist(&[(APP_USER, APP_PASSWORD)]));
    let client = pgwolf_tests::connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    let row = within(
        10,
        "query through ini-configured pgwolf",
        client.query_one("SELECT current_database()::text", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, String>(0), "appdb");
}

fn convert(ini: &Path) -> String {
    let out = run_pgwolf(&["convert".as_ref(), ini.as_os_str()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "convert {}: {stderr}", ini.display());
    stdout
}

/// The converted file next to the ini (relative paths resolve the same)
/// passes `pgwolf check`.
fn converted_passes_check(ini: &Path, dir: &Path) -> String {
    let toml = convert(ini);
    let path = dir.join("converted.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = check(&path);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "check refused the converted {}:\n{toml}\n{stdout}{stderr}",
        ini.display()
    );
    toml
}

#[test]
fn convert_the_example_and_debian_s_pgbouncer_ini() {
    let files = Files::new();
    let example = pgwolf_tests::tools::workspace_dir().join("deploy/examples/pgbouncer.ini");
    let ini = files.dir.path().join("pgbouncer.ini");
    std::fs::copy(&example, &ini).unwrap();
    let toml = converted_passes_check(&ini, files.dir.path());
    assert!(toml.contains("[databases.app]"), "{toml}");
    assert!(
        toml.contains("logfile"),
        "unsupported settings named: {toml}"
    );

    // The file Debian's pgbouncer package installs, with a database added
    // (it ships none) and its auth file here.
    let debian = std::fs::read_to_string("/etc/pgbouncer/pgbouncer.ini")
        .expect("Debian's pgbouncer package (scripts/install-deps)");
    let debian = debian
        .replacen(
            "[databases]\n",
            "[databases]\nappdb = host=127.0.0.1 port=5432 dbname=appdb\n",
            1,
        )
        .replace("/etc/pgbouncer/userlist.txt", "userlist.txt");
    let ini = files.dir.path().join("debian.ini");
    std::fs::write(&ini, debian).unwrap();
    let toml = converted_passes_check(&ini, files.dir.path());
    assert!(toml.contains("[databases.appdb]"), "{toml}");
    assert!(toml.contains("auth_type = \"md5\""), "{toml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_clients_with_a_converted_pgbouncer_ini() {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    let files = Files::new();
    let ini = files.write(
        "pgbouncer.ini",
        &format!(
            "[databases]\nappdb = host=127.0.0.1 port={} dbname=appdb\n\n[pgbouncer]\n\
             auth_type = scram-sha-256\nauth_file = userlist.txt\npool_mode = transaction\n\
             default_pool_size = 4\n",
            pg.port()
        ),
    );
    // The harness picks the port: the converted listen line goes.
    let toml: String = convert(&ini)
        .lines()
        .filter(|l| !l.starts_with("listen = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(toml.contains("default_pool_size = 4"), "{toml}");
    let proxy = Pgwolf::start(&toml, &userlist(&[(APP_USER, APP_PASSWORD)]));
    let client = pgwolf_tests::connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB).await;
    let row = within(
        10,
        "query through the converted config",
        client.query_one("SELECT current_database()::text", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, String>(0), "appdb");
}
