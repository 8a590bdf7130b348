//! Unix sockets on both sides, as PgBouncer users run them: clients on
//! pgwolf's `unix_socket_dir` (psql, pgbench, tokio-postgres), pgwolf to
//! PostgreSQL over its socket directory (`host = "/dir"`), cancel requests
//! over both, `peer` authentication allowed and refused, `local` HBA
//! lines, and a pgbouncer.ini's defaults (socket in /tmp, hostless
//! databases over the socket).

use pgwolf_tests::clients::{libpq_command, simple_rows, simple_value, sqlstate};
use pgwolf_tests::proxy::Pgwolf;
use pgwolf_tests::tools::run_bounded;
use pgwolf_tests::{userlist, within, PgServer, APP_DB, APP_PASSWORD, APP_USER};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Config, NoTls};

/// The OS user the tests run as: what `peer` sees on the socket.
fn os_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn server() -> PgServer {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    pg
}

/// pgwolf with its own socket in a temp dir, reaching `pg` over
/// PostgreSQL's socket directory. `more`: top-level settings; with
/// `forced`, the pool logs in as the app user whoever the client is.
fn pgwolf_on_sockets(
    pg: &PgServer,
    socket_dir: &Path,
    mode: &str,
    more: &str,
    forced: bool,
) -> Pgwolf {
    let login = if forced {
        format!("user = \"{APP_USER}\"\npassword = \"{APP_PASSWORD}\"\n")
    } else {
        String::new()
    };
    let toml = format!(
        "unix_socket_dir = {dir:?}\nadmin_users = [\"{APP_USER}\"]\n{more}\n\
         [databases.{APP_DB}]\nhost = {pg_dir:?}\nport = {port}\npool_mode = \"{mode}\"\npool_size = {size}\n{login}",
        // Transaction mode shares one server connection among all the
        // clients; session mode needs one per client.
        size = if mode == "session" { 8 } else { 1 },
        dir = socket_dir.display().to_string(),
        pg_dir = pg.socket_dir().display().to_string(),
        port = pg.port(),
    );
    Pgwolf::start(&toml, &userlist(&[(APP_USER, APP_PASSWORD)]))
}

fn over_socket(dir: &Path, port: u16, user: &str, password: &str, db: &str) -> Config {
    let mut c = Config::new();
    c.host_path(dir)
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = within(30, "connect", config.connect(NoTls)).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn both_sides_in(mode: &str) {
    let pg = server().await;
    let sockets = tempfile::tempdir().unwrap();
    let proxy = pgwolf_on_sockets(&pg, sockets.path(), mode, "", false);
    let socket = sockets.path().join(format!(".s.PGSQL.{}", proxy.port()));
    assert!(socket.exists(), "no socket at {}", socket.display());
    let config = over_socket(sockets.path(), proxy.port(), APP_USER, APP_PASSWORD, APP_DB);

    // Two clients (sharing one server connection in transaction mode);
    // PostgreSQL sees a socket client (no server address), so pgwolf came over its socket.
    let (a, b) = (
        connect(&config).await.unwrap(),
        connect(&config).await.unwrap(),
    );
    for c in [&a, &b] {
        let v = simple_value(c, "SELECT inet_server_addr() IS NULL")
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("t"));
    }
    let console = connect(&over_socket(
        sockets.path(),
        proxy.port(),
        APP_USER,
        APP_PASSWORD,
        "pgwolf",
    ))
    .await
    .unwrap();
    let clients = simple_rows(&console, "SHOW CLIENTS").await.unwrap();
    assert!(
        clients
            .iter()
            .all(|r| r["addr"] == "unix" && r["port"] == proxy.port().to_string()),
        "{clients:?}"
    );
    let servers = simple_rows(&console, "SHOW SERVERS").await.unwrap();
    assert!(
        !servers.is_empty()
            && servers
                .iter()
                .all(|r| r["addr"] == "unix" && r["port"] == pg.port().to_string()),
        "{servers:?}"
    );

    // Cancel: the client's CancelRequest over pgwolf's socket, pgwolf's to
    // PostgreSQL over its socket.
    let token = a.cancel_token();
    let sleeping = tokio::spawn(async move { a.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    within(5, "CancelRequest", token.cancel_query(NoTls))
        .await
        .unwrap();
    let err = within(5, "cancelled query", sleeping)
        .await
        .unwrap()
        .expect_err("pg_sleep(30) was not cancelled");
    assert_eq!(sqlstate(&err), Some("57014"), "{err:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );

    // psql and pgbench over the socket.
    let port = proxy.port().to_string();
    let dir = sockets.path().display().to_string();
    let mut psql = libpq_command("psql", proxy.port(), APP_USER, APP_PASSWORD, APP_DB);
    psql.args([
        "-X",
        "-A",
        "-t",
        "-h",
        &dir,
        "-p",
        &port,
        "-c",
        "SELECT 40 + 2",
    ]);
    let out = run_bounded(&mut psql, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let script = sockets.path().join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let mut bench = libpq_command("pgbench", proxy.port(), APP_USER, APP_PASSWORD, APP_DB);
    bench
        .args(["-n", "-c", "4", "-t", "50", "-h", &dir, "-p", &port, "-f"])
        .arg(&script)
        .arg(APP_DB);
    let out = run_bounded(&mut bench, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("number of transactions actually processed: 200/200"),
        "{text}"
    );
    let b_after = simple_value(&b, "SELECT 1").await.unwrap();
    assert_eq!(b_after.as_deref(), Some("1"));

    // The socket file goes with the process.
    let mut proxy = proxy;
    proxy.signal("TERM");
    let exited = proxy.wait_exit(Duration::from_secs(30)).await;
    assert!(exited.is_some(), "pgwolf did not stop on SIGTERM");
    assert!(!socket.exists(), "{} left behind", socket.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_servers_on_sockets_in_transaction_mode() {
    both_sides_in("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_servers_on_sockets_in_session_mode() {
    both_sides_in("session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_authentication_on_the_socket() {
    let pg = server().await;
    let sockets = tempfile::tempdir().unwrap();
    // The database entry names the server login; peer decides who gets in.
    let proxy = pgwolf_on_sockets(
        &pg,
        sockets.path(),
        "transaction",
        "auth_type = \"peer\"",
        true,
    );
    let me = os_user();

    let as_me = over_socket(sockets.path(), proxy.port(), &me, "", APP_DB);
    let client = connect(&as_me).await.expect("the OS user logs in by peer");
    let v = simple_value(&client, "SELECT current_user::text")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some(APP_USER));

    let as_other = over_socket(sockets.path(), proxy.port(), APP_USER, APP_PASSWORD, APP_DB);
    let e = connect(&as_other)
        .await
        .expect_err("another user is refused");
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "28000");
    assert_eq!(
        db.message(),
        format!("Peer authentication failed for user \"{APP_USER}\"")
    );
    let e = pgwolf_tests::try_connect(proxy.port(), &me, "", APP_DB)
        .await
        .expect_err("peer over TCP is refused");
    assert_eq!(sqlstate(&e), Some("28000"), "{e:?}");
    assert!(!proxy.log().contains(APP_PASSWORD), "a secret in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_local_lines_pick_the_socket() {
    let pg = server().await;
    let sockets = tempfile::tempdir().unwrap();
    let me = os_user();
    let hba = sockets.path().join("hba.conf");
    std::fs::write(
        &hba,
        format!(
            "local all {me} peer\nlocal all all scram-sha-256\nhost all all 127.0.0.1/32 reject\n"
        ),
    )
    .unwrap();
    let proxy = pgwolf_on_sockets(
        &pg,
        sockets.path(),
        "transaction",
        &format!(
            "auth_type = \"hba\"\nauth_hba_file = {:?}",
            hba.display().to_string()
        ),
        true,
    );
    let app = over_socket(sockets.path(), proxy.port(), APP_USER, APP_PASSWORD, APP_DB);
    let client = connect(&app).await.expect("SCRAM on the socket");
    simple_value(&client, "SELECT 1").await.unwrap();
    let wrong = over_socket(sockets.path(), proxy.port(), APP_USER, "wrong", APP_DB);
    let e = connect(&wrong).await.expect_err("wrong password");
    assert_eq!(sqlstate(&e), Some("28P01"));
    let e = pgwolf_tests::try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect_err("TCP is rejected");
    assert_eq!(sqlstate(&e), Some("28000"));
    // The OS user's line is peer: no password asked.
    let as_me = over_socket(sockets.path(), proxy.port(), &me, "", APP_DB);
    let client = connect(&as_me).await.expect("peer on the socket");
    simple_value(&client, "SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_ini_defaults_use_the_socket() {
    // A hostless database goes over unix_socket_dir, where pgwolf listens
    // too, as PgBouncer does with the same file.
    let pg = server().await;
    let ini = format!(
        "[databases]\n{APP_DB} = port={} dbname={APP_DB}\n\n[pgbouncer]\n\
         auth_type = scram-sha-256\npool_mode = transaction\nunix_socket_dir = {}\n",
        pg.port(),
        pg.socket_dir().display()
    );
    let proxy = Pgwolf::start_ini(&ini, &userlist(&[(APP_USER, APP_PASSWORD)]));
    let config = over_socket(
        &pg.socket_dir(),
        proxy.port(),
        APP_USER,
        APP_PASSWORD,
        APP_DB,
    );
    let client = connect(&config)
        .await
        .expect("pgwolf's socket next to PostgreSQL's");
    let v = simple_value(&client, "SELECT inet_server_addr() IS NULL")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("t"));
}
