//! TLS on both sides with real clients and a real server: psql (libpq)
//! with sslmode require / verify-full and client certificates, `auth_type =
//! cert`, a PostgreSQL with `ssl = on` and only `hostssl` lines, PostgreSQL
//! 17's direct negotiation (ALPN `postgresql`), and certificates replaced
//! and reloaded on SIGHUP while a TLS client stays connected. Certificates
//! are made per test with rcgen.

use pgwolf_tests::certs::{Ca, Pair};
use pgwolf_tests::clients::psql_command;
use pgwolf_tests::tools::{give_to_server_user, run_bounded};
use pgwolf_tests::{
    within, Fixture, FixtureOptions, PgOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER,
};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// psql as `app` through pgwolf with these libpq settings (PGSSLMODE, ...).
fn psql_env(port: u16, password: &str, env: &[(&str, &Path)], mode: &str, sql: &str) -> Output {
    let mut cmd = psql_command(port, APP_USER, password, APP_DB);
    cmd.env("PGSSLMODE", mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("-c").arg(sql);
    run_bounded(&mut cmd, Duration::from_secs(30))
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "psql succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn client_tls_settings(mode: &str, server: &Pair) -> String {
    format!(
        "client_tls_sslmode = \"{mode}\"\nclient_tls_cert_file = {:?}\nclient_tls_key_file = {:?}\n",
        server.cert, server.key
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_require_and_verify_full_plaintext_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let other_ca = Ca::new("some other CA").write(dir.path(), "other-ca");
    let server = ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&client_tls_settings("require", &server))
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let port = fx.port();

    let v = ok(&psql_env(
        port,
        APP_PASSWORD,
        &[],
        "require",
        "SELECT 'over tls'",
    ));
    assert_eq!(v, "over tls");
    let v = ok(&psql_env(
        port,
        APP_PASSWORD,
        &[("PGSSLROOTCERT", &ca_file)],
        "verify-full",
        "SELECT 1",
    ));
    assert_eq!(v, "1");
    let e = failed(&psql_env(port, APP_PASSWORD, &[], "disable", "SELECT 1"));
    assert!(e.contains("SSL connection is required"), "{e}");
    let e = failed(&psql_env(
        port,
        APP_PASSWORD,
        &[("PGSSLROOTCERT", &other_ca)],
        "verify-full",
        "SELECT 1",
    ));
    assert!(e.contains("certificate verify failed"), "{e}");
    let e = failed(&psql_env(port, "wrong", &[], "require", "SELECT 1"));
    assert!(e.contains("password authentication failed"), "{e}");

    // SHOW CLIENTS tells which clients use TLS, and with what.
    let mut cmd = psql_command(port, APP_USER, APP_PASSWORD, "pgwolf");
    cmd.env("PGSSLMODE", "require")
        .arg("-c")
        .arg("SHOW CLIENTS");
    let rows = ok(&run_bounded(&mut cmd, Duration::from_secs(30)));
    assert!(
        rows.lines().any(|r| r.contains("|TLSv1.3/TLS13_")),
        "no TLS client in SHOW CLIENTS:\n{rows}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_cert_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let app_cert = ca.issue(dir.path(), "app", APP_USER, &[]);
    let mallory = ca.issue(dir.path(), "mallory", "mallory", &[]);
    let stranger = Ca::new("some other CA").issue(dir.path(), "stranger", APP_USER, &[]);
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .auth_type("cert")
        .setting(&client_tls_settings("verify-full", &server))
        .setting(&format!("client_tls_ca_file = {ca_file:?}"));
    let fx = Fixture::with(opts).await;
    let port = fx.port();
    let with_cert = |pair: &Pair| {
        psql_env(
            port,
            "no password is asked",
            &[
                ("PGSSLROOTCERT", &ca_file),
                ("PGSSLCERT", &pair.cert),
                ("PGSSLKEY", &pair.key),
            ],
            "verify-full",
            "SELECT current_user",
        )
    };

    assert_eq!(ok(&with_cert(&app_cert)), APP_USER);
    let e = failed(&with_cert(&mallory));
    assert!(
        e.contains("certificate authentication failed for user \"app\""),
        "{e}"
    );
    // Signed by a CA pgwolf does not trust: the handshake fails.
    failed(&with_cert(&stranger));
    // No certificate at all: verify-full requires one.
    failed(&psql_env(
        port,
        APP_PASSWORD,
        &[("PGSSLROOTCERT", &ca_file)],
        "verify-full",
        "SELECT 1",
    ));
}

/// A PostgreSQL with ssl = on whose pg_hba.conf has only hostssl lines.
/// With `client_certificates`, the hostssl lines also demand a client
/// certificate signed by `ca` (`clientcert=verify-ca`).
async fn tls_only_server(dir: &Path, ca: &Ca, client_certificates: bool) -> Fixture {
    tls_only_server_named(dir, ca, client_certificates, NAMES).await
}

/// As [`tls_only_server`], its certificate valid for `names` only.
async fn tls_only_server_named(
    dir: &Path,
    ca: &Ca,
    client_certificates: bool,
    names: &[&str],
) -> Fixture {
    let pg_certs = dir.join("pg");
    std::fs::create_dir(&pg_certs).unwrap();
    let pg_pair = ca.issue(&pg_certs, "server", "localhost", names);
    let pg_ca = ca.write(&pg_certs, "ca");
    give_to_server_user(&pg_certs);
    let mut conf = vec![
        "ssl = on".into(),
        format!("ssl_cert_file = '{}'", pg_pair.cert.display()),
        format!("ssl_key_file = '{}'", pg_pair.key.display()),
    ];
    let mut options = "";
    if client_certificates {
        conf.push(format!("ssl_ca_file = '{}'", pg_ca.display()));
        options = " clientcert=verify-ca";
    }
    let opts = FixtureOptions {
        pg: PgOptions {
            conf,
            ..PgOptions::default()
        },
        ..FixtureOptions::new(PoolMode::Transaction, 2)
    }
    .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let hba = fx.pg.data_dir().join("pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "local all all scram-sha-256\n\
             hostssl all all 127.0.0.1/32 scram-sha-256{options}\n\
             hostssl all all ::1/128 scram-sha-256{options}\n"
        ),
    )
    .unwrap();
    give_to_server_user(&hba);
    fx.pg.execute("postgres", "SELECT pg_reload_conf()").await;
    fx
}

fn server_tls_config(fx: &Fixture, settings: &str) -> String {
    format!("{settings}\n{}", fx.config_with(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_verify_full_to_a_hostssl_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("database CA");
    let ca_file = ca.write(dir.path(), "db-ca");
    let other_ca = Ca::new("some other CA").write(dir.path(), "other-ca");
    let fx = tls_only_server(dir.path(), &ca, false).await;

    fx.proxy.rewrite_config(&server_tls_config(
        &fx,
        &format!("server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {ca_file:?}"),
    ));
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 1).await;
    let c = fx.connect().await;
    let row = c
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the server connection is not TLS");
    assert_eq!(row.get::<_, String>(1), "TLSv1.3");
    drop(c);

    // Not encrypted: the server's hostssl-only rules refuse pgwolf.
    fx.proxy
        .rewrite_config(&server_tls_config(&fx, "server_tls_sslmode = \"disable\""));
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 2).await;
    let e = admin_reconnect_then_fail(&fx).await;
    assert!(e.contains("no pg_hba.conf entry"), "{e}");
    assert!(e.contains("no encryption"), "{e}");

    // Encrypted but signed by a CA pgwolf was not told to trust.
    fx.proxy.rewrite_config(&server_tls_config(
        &fx,
        &format!("server_tls_sslmode = \"verify-ca\"\nserver_tls_ca_file = {other_ca:?}"),
    ));
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 3).await;
    let e = admin_reconnect_then_fail(&fx).await;
    assert!(e.contains("TLS handshake with the server failed"), "{e}");
}

/// The modes short of verify-full against a server whose certificate does
/// not name the address pgwolf dials: verify-full refuses it; verify-ca
/// (chain only), require, prefer and allow all encrypt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_modes_below_verify_full_encrypt_without_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("database CA");
    let ca_file = ca.write(dir.path(), "db-ca");
    let fx = tls_only_server_named(dir.path(), &ca, false, &["db.example"]).await;
    let mut reloads = 0;
    let mut set = |settings: String| {
        fx.proxy.rewrite_config(&server_tls_config(&fx, &settings));
        fx.proxy.signal("HUP");
        reloads += 1;
        reloads
    };

    let n = set(format!(
        "server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {ca_file:?}"
    ));
    wait_for_reloads(&fx, n).await;
    let e = admin_reconnect_then_fail(&fx).await;
    assert!(e.contains("TLS handshake with the server failed"), "{e}");

    for mode in ["verify-ca", "require", "prefer", "allow"] {
        let n = set(format!(
            "server_tls_sslmode = \"{mode}\"\nserver_tls_ca_file = {ca_file:?}"
        ));
        wait_for_reloads(&fx, n).await;
        let mut cmd = psql_command(fx.port(), APP_USER, APP_PASSWORD, "pgwolf");
        cmd.arg("-c").arg("RECONNECT");
        ok(&run_bounded(&mut cmd, Duration::from_secs(30)));
        let c = fx.connect().await;
        let ssl: bool = c
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"))
            .get(0);
        assert!(ssl, "{mode}: the server connection is not TLS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_presents_pgwolf_s_certificate_to_a_server_that_wants_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("database CA");
    let ca_file = ca.write(dir.path(), "db-ca");
    let mine = ca.issue(dir.path(), "pgwolf", "pgwolf", &[]);
    let fx = tls_only_server(dir.path(), &ca, true).await;

    fx.proxy.rewrite_config(&server_tls_config(
        &fx,
        &format!(
            "server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {ca_file:?}\n\
             server_tls_cert_file = {:?}\nserver_tls_key_file = {:?}",
            mine.cert, mine.key
        ),
    ));
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 1).await;
    let c = fx.connect().await;
    let dn: String = c
        .query_one(
            "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dn, "/CN=pgwolf");
    drop(c);

    fx.proxy.rewrite_config(&server_tls_config(
        &fx,
        &format!("server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {ca_file:?}"),
    ));
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 2).await;
    let e = admin_reconnect_then_fail(&fx).await;
    assert!(
        e.contains("connection requires a valid client certificate"),
        "{e}"
    );
}

/// RECONNECT first: the pool's idle connections were made over TLS before
/// the reload, and only a new one shows what the new setting does.
async fn admin_reconnect_then_fail(fx: &Fixture) -> String {
    let mut cmd = psql_command(fx.port(), APP_USER, APP_PASSWORD, "pgwolf");
    cmd.arg("-c").arg("RECONNECT");
    let _ = run_bounded(&mut cmd, Duration::from_secs(30));
    match fx.try_connect().await {
        Ok(c) => match c.simple_query("SELECT 1").await {
            Ok(_) => panic!("a plaintext server connection was accepted"),
            Err(e) => e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or(e.to_string()),
        },
        Err(e) => e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or(e.to_string()),
    }
}

async fn wait_for_reloads(fx: &Fixture, n: usize) {
    within(20, "reload", async {
        loop {
            let log = fx.proxy.log();
            if log.matches("configuration reloaded").count() >= n {
                return;
            }
            assert!(!log.contains("reload failed"), "reload failed:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_require_against_a_plaintext_server_is_a_clear_error() {
    let opts =
        FixtureOptions::new(PoolMode::Transaction, 2).setting("server_tls_sslmode = \"require\"");
    let fx = Fixture::with(opts).await;
    let e = match fx.try_connect().await {
        Ok(c) => c.simple_query("SELECT 1").await.expect_err("no TLS server"),
        Err(e) => e,
    };
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or(e.to_string());
    assert!(
        message.contains("server does not support TLS, but server_tls_sslmode is require"),
        "{message}"
    );
}

/// A tokio-postgres client over TLS that trusts `ca`: SSLRequest first, or
/// TLS straight away (`direct`), offering ALPN `postgresql` when `alpn`.
async fn tls_client(
    port: u16,
    ca: &Path,
    direct: bool,
    alpn: bool,
) -> Result<tokio_postgres::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    if !direct {
        tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap();
        let answer = tcp.read_u8().await.map_err(|e| e.to_string())?;
        if answer != b'S' {
            return Err(format!("SSLRequest answered {answer:?}"));
        }
    }
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut pg = tokio_postgres::Config::new();
    pg.user(APP_USER).password(APP_PASSWORD).dbname(APP_DB);
    let (client, connection) = within(
        10,
        "login over TLS",
        pg.connect_raw(tls, tokio_postgres::NoTls),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(client)
}

async fn one(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT 1", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&client_tls_settings("require", &server));
    let fx = Fixture::with(opts).await;

    let direct = tls_client(fx.port(), &ca_file, true, true).await.unwrap();
    assert_eq!(one(&direct).await, 1);
    let negotiated = tls_client(fx.port(), &ca_file, false, false).await.unwrap();
    assert_eq!(one(&negotiated).await, 1);
    tls_client(fx.port(), &ca_file, true, false)
        .await
        .expect_err("direct TLS without ALPN is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_sighup_while_a_tls_client_stays() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let old_ca_file = old_ca.write(dir.path(), "old-ca");
    let server = old_ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&client_tls_settings("require", &server))
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let staying = tls_client(fx.port(), &old_ca_file, false, false)
        .await
        .unwrap();
    assert_eq!(one(&staying).await, 1);

    // New certificate from a new CA, written over the same files.
    let new_ca = Ca::new("new CA");
    let new_ca_file = new_ca.write(dir.path(), "new-ca");
    let replaced = new_ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    assert_eq!(
        (replaced.cert.clone(), replaced.key.clone()),
        (server.cert, server.key)
    );
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 1).await;

    assert_eq!(one(&staying).await, 1, "the open TLS connection survives");
    let fresh = tls_client(fx.port(), &new_ca_file, false, false)
        .await
        .unwrap();
    assert_eq!(one(&fresh).await, 1);
    let e = tls_client(fx.port(), &old_ca_file, false, false)
        .await
        .expect_err("the old certificate is no longer shown");
    assert!(e.contains("handshake"), "{e}");

    // A broken key file: the reload fails, the running certificate stays.
    std::fs::write(&replaced.key, "not a key").unwrap();
    fx.proxy.signal("HUP");
    within(20, "failed reload", async {
        while !fx.proxy.log().contains("reload failed") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(!fx.proxy.log().contains("not a key"));
    let again = tls_client(fx.port(), &new_ca_file, false, false)
        .await
        .unwrap();
    assert_eq!(one(&again).await, 1);
    assert_eq!(one(&staying).await, 1);

    // The admin console's RELOAD loads certificates the same way.
    let third_ca = Ca::new("third CA");
    let third_ca_file = third_ca.write(dir.path(), "third-ca");
    third_ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let mut cmd = psql_command(fx.port(), APP_USER, APP_PASSWORD, "pgwolf");
    cmd.env("PGSSLMODE", "require").arg("-c").arg("RELOAD");
    ok(&run_bounded(&mut cmd, Duration::from_secs(30)));
    let third = tls_client(fx.port(), &third_ca_file, false, false)
        .await
        .unwrap();
    assert_eq!(one(&third).await, 1);
    assert_eq!(one(&staying).await, 1, "still the first connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_hostssl_and_cert_lines_see_the_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let app_cert = ca.issue(dir.path(), "app", APP_USER, &[]);
    let hba = dir.path().join("hba.conf");
    std::fs::write(
        &hba,
        "hostnossl all all all reject\n\
         hostssl appdb app 127.0.0.1/32 cert\n",
    )
    .unwrap();
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .auth_type("hba")
        .setting(&format!("auth_hba_file = {hba:?}"))
        .setting(&client_tls_settings("prefer", &server))
        .setting(&format!("client_tls_ca_file = {ca_file:?}"));
    let fx = Fixture::with(opts).await;
    let port = fx.port();

    let e = failed(&psql_env(port, APP_PASSWORD, &[], "disable", "SELECT 1"));
    assert!(
        e.contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"app\", database \"appdb\", no encryption"),
        "{e}"
    );
    // TLS without a certificate reaches the cert line and fails there.
    let e = failed(&psql_env(port, APP_PASSWORD, &[], "require", "SELECT 1"));
    assert!(
        e.contains("certificate authentication failed for user \"app\""),
        "{e}"
    );
    let v = ok(&psql_env(
        port,
        "unused",
        &[("PGSSLCERT", &app_cert.cert), ("PGSSLKEY", &app_cert.key)],
        "require",
        "SELECT current_user",
    ));
    assert_eq!(v, APP_USER);
}

/// `clientcert=verify-full` on a password line: the password alone is not
/// enough, nor is another user's certificate; both together are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_clientcert_demands_the_user_s_certificate_besides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let app_cert = ca.issue(dir.path(), "app", APP_USER, &[]);
    let other_cert = ca.issue(dir.path(), "other", "someone-else", &[]);
    let hba = dir.path().join("hba.conf");
    std::fs::write(
        &hba,
        "hostssl appdb app 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n",
    )
    .unwrap();
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .auth_type("hba")
        .setting(&format!("auth_hba_file = {hba:?}"))
        .setting(&client_tls_settings("require", &server))
        .setting(&format!("client_tls_ca_file = {ca_file:?}"));
    let fx = Fixture::with(opts).await;
    let port = fx.port();
    let (mine, other) = (client_cert_env(&app_cert), client_cert_env(&other_cert));

    let e = failed(&psql_env(port, APP_PASSWORD, &[], "require", "SELECT 1"));
    assert!(e.contains("certificate authentication failed"), "{e}");
    let e = failed(&psql_env(port, APP_PASSWORD, &other, "require", "SELECT 1"));
    assert!(e.contains("certificate authentication failed"), "{e}");
    let e = failed(&psql_env(
        port,
        "not-the-password",
        &mine,
        "require",
        "SELECT 1",
    ));
    assert!(e.contains("password authentication failed"), "{e}");
    let v = ok(&psql_env(
        port,
        APP_PASSWORD,
        &mine,
        "require",
        "SELECT current_user",
    ));
    assert_eq!(v, APP_USER);
}

fn client_cert_env(cert: &Pair) -> [(&'static str, &Path); 2] {
    [("PGSSLCERT", &cert.cert), ("PGSSLKEY", &cert.key)]
}

/// client_tls_sslmode allow takes plaintext and TLS alike (a presented
/// certificate is still checked); verify-ca demands a certificate of the
/// CA, whoever it names, and the password still decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_allow_and_verify_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(dir.path(), "pgwolf", "localhost", NAMES);
    let someone = ca.issue(dir.path(), "someone", "someone-else", &[]);
    let stranger = Ca::new("some other CA").issue(dir.path(), "stranger", APP_USER, &[]);
    let settings = |mode: &str| {
        format!(
            "{}client_tls_ca_file = {ca_file:?}\n",
            client_tls_settings(mode, &server)
        )
    };
    let opts = FixtureOptions::new(PoolMode::Transaction, 2).setting(&settings("allow"));
    let fx = Fixture::with(opts).await;
    let port = fx.port();
    let (someone, stranger) = (client_cert_env(&someone), client_cert_env(&stranger));

    assert_eq!(
        ok(&psql_env(port, APP_PASSWORD, &[], "disable", "SELECT 1")),
        "1"
    );
    assert_eq!(
        ok(&psql_env(port, APP_PASSWORD, &[], "require", "SELECT 1")),
        "1"
    );
    let e = failed(&psql_env(
        port,
        APP_PASSWORD,
        &stranger,
        "require",
        "SELECT 1",
    ));
    assert!(e.contains("alert unknown ca"), "{e}");

    let config = fx
        .config_with("")
        .replace(&settings("allow"), &settings("verify-ca"));
    fx.proxy.rewrite_config(&config);
    fx.proxy.signal("HUP");
    wait_for_reloads(&fx, 1).await;
    let e = failed(&psql_env(port, APP_PASSWORD, &[], "require", "SELECT 1"));
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = failed(&psql_env(port, APP_PASSWORD, &[], "disable", "SELECT 1"));
    assert!(e.contains("SSL connection is required"), "{e}");
    let v = ok(&psql_env(
        port,
        APP_PASSWORD,
        &someone,
        "require",
        "SELECT current_user",
    ));
    assert_eq!(v, APP_USER, "verify-ca checks the chain, not the name");
    let e = failed(&psql_env(port, "wrong", &someone, "require", "SELECT 1"));
    assert!(e.contains("password authentication failed"), "{e}");
}
