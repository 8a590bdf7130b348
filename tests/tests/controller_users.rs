//! A reconcile creates the cluster's users and databases in its primary
//! (controller/src/reconcile/cluster.rs → postgres::connect, roles): here
//! the API server is kube-fake-client and the primary a real PostgreSQL 15
//! that, like Spilo's, takes only `hostssl` connections from outside.

#[path = "../../controller/tests/support/fake_api.rs"]
mod fake_api;

use k8s_openapi::api::core::v1::{Endpoints, Secret};
use kube::api::{Api, Patch, PatchParams};
use pgwolf_controller::api::PostgresCluster;
use pgwolf_controller::postgres::connect;
use pgwolf_controller::reconcile::cluster::{PostgresAccess, Settings};
use pgwolf_controller::reconcile::{self};
use pgwolf_tests::certs::{Ca, Pair};
use pgwolf_tests::clients::{libpq_command, psql_ok};
use pgwolf_tests::tools::give_to_server_user;
use pgwolf_tests::tools::run_bounded;
use pgwolf_tests::{try_connect, PgOptions, PgServer};
use serde_json::json;
use std::time::Duration;
use tokio_postgres::config::SslMode;

const NS: &str = "demo";

/// A PostgreSQL with ssl = on and only hostssl lines for TCP, serving a
/// certificate of a CA the controller knows nothing of (the files are
/// replaced by the controller's own later).
fn tls_only_server(dir: &std::path::Path) -> (PgServer, Pair) {
    let ca = Ca::new("someone-else-s-ca");
    let pair = ca.issue(dir, "server", "localhost", &["localhost", "127.0.0.1"]);
    give_to_server_user(dir);
    let pg = PgServer::start_with(PgOptions {
        conf: vec![
            "ssl = on".into(),
            format!("ssl_cert_file = '{}'", pair.cert.display()),
            format!("ssl_key_file = '{}'", pair.key.display()),
        ],
        ..PgOptions::default()
    });
    let hba = pg.data_dir().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all scram-sha-256\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    give_to_server_user(&hba);
    (pg, pair)
}

/// The test's own superuser connection: over the Unix socket, which the
/// hostssl-only rules leave open (`local` line).
async fn superuser(pg: &PgServer, password: &str) -> tokio_postgres::Client {
    let socket_dir = pg.data_dir().parent().unwrap().to_path_buf();
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(socket_dir)
        .port(pg.port())
        .user(pgwolf_tests::SUPERUSER)
        .password(password)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("superuser over the Unix socket");
    tokio::spawn(connection);
    client
}

fn stored_cluster() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/cluster-with-pooler.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut cluster = pgwolf_controller::render::parse_cluster(&text).unwrap();
    cluster.metadata.uid = Some("00000000-0000-4000-8000-0000000005e5".into());
    cluster.metadata.namespace = Some(NS.into());
    serde_json::to_value(&cluster).unwrap()
}

/// The controller dials the primary Service's name, as in a cluster, and
/// reaches this machine's PostgreSQL through `hostaddr`: so the name on
/// the certificate is checked as it would be there.
fn settings(pg: &PgServer, ssl_mode: SslMode) -> Settings {
    Settings {
        postgres: Some(PostgresAccess {
            host: None,
            hostaddr: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            port: pg.port(),
            timeout: Duration::from_secs(10),
            ssl_mode,
        }),
        ..Default::default()
    }
}

async fn reconcile(
    client: &kube::Client,
    settings: &Settings,
) -> Result<reconcile::Outcome, reconcile::Error> {
    let cluster: PostgresCluster = Api::namespaced(client.clone(), NS)
        .get("main")
        .await
        .unwrap();
    reconcile::reconcile(client, &cluster, settings).await
}

async fn secret_value(client: &kube::Client, name: &str, key: &str) -> String {
    let s: Secret = Api::namespaced(client.clone(), NS).get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()[key].0.clone()).unwrap()
}

async fn role_exists(pg: &PgServer, password: &str, name: &str) -> bool {
    superuser(pg, password)
        .await
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

async fn rolpassword(pg: &PgServer, password: &str, role: &str) -> String {
    superuser(pg, password)
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

/// What Spilo does with the controller's `<cluster>-tls` Secret mounted at
/// /tls: serve that certificate (PostgreSQL re-reads it on a reload).
async fn serve_issued_certificate(
    client: &kube::Client,
    pg: &PgServer,
    superuser_password: &str,
    files: &Pair,
) {
    std::fs::write(
        &files.cert,
        secret_value(client, "main-tls", "tls.crt").await,
    )
    .unwrap();
    std::fs::write(
        &files.key,
        secret_value(client, "main-tls", "tls.key").await,
    )
    .unwrap();
    give_to_server_user(files.cert.parent().unwrap());
    superuser(pg, superuser_password)
        .await
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_user_and_database_appear_once_there_is_a_primary() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, cert_files) = tls_only_server(dir.path());
    pg.execute("postgres", "SELECT pg_reload_conf()").await;
    assert!(
        try_connect(
            pg.port(),
            "postgres",
            pgwolf_tests::SUPERUSER_PASSWORD,
            "postgres"
        )
        .await
        .is_err(),
        "the server still takes plain TCP"
    );
    let client = fake_api::client(vec![stored_cluster()]).await;
    let tls = settings(&pg, SslMode::Require);

    // No leader yet: nothing to connect to, and no error for it.
    reconcile(&client, &tls).await.expect("first reconcile");
    assert!(!role_exists(&pg, pgwolf_tests::SUPERUSER_PASSWORD, "keycloak").await);

    // What Spilo does with PGPASSWORD_SUPERUSER from the Secret, and what
    // Patroni writes once it has a leader.
    let su = secret_value(&client, "main-postgres-credentials", "password").await;
    superuser(&pg, pgwolf_tests::SUPERUSER_PASSWORD)
        .await
        .execute(&format!("ALTER ROLE postgres PASSWORD '{su}'"), &[])
        .await
        .unwrap();
    Api::<Endpoints>::namespaced(client.clone(), NS)
        .patch(
            "main",
            &PatchParams::apply("patroni").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": { "name": "main", "namespace": NS,
                              "annotations": { "leader": "main-0" } },
            })),
        )
        .await
        .unwrap();

    // Without TLS the primary's hostssl-only rules turn the controller
    // away, and the error says so without the password.
    let err = reconcile(&client, &settings(&pg, SslMode::Disable))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "users");
    assert!(err.to_string().contains("28000"), "{err}");
    assert!(!err.to_string().contains(&su), "{err}");

    // A server whose certificate is not of the cluster's CA is not given
    // the superuser's password.
    let err = reconcile(&client, &tls).await.unwrap_err();
    assert_eq!(err.kind(), "users");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(!role_exists(&pg, &su, "keycloak").await);

    serve_issued_certificate(&client, &pg, &su, &cert_files).await;
    reconcile(&client, &tls)
        .await
        .expect("reconcile with a primary serving the issued certificate");
    let password = secret_value(&client, "keycloak-db", "password").await;
    let dbname = secret_value(&client, "keycloak-db", "dbname").await;
    assert_eq!(dbname, "keycloak");
    let ca = secret_value(&client, "main-tls", "ca.crt").await;
    let app = connect::connect(
        &connect::Target {
            host: format!("main.{NS}.svc"),
            hostaddr: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            port: pg.port(),
            user: "keycloak".into(),
            password: password.clone(),
            dbname: dbname.clone(),
            ca_pem: Some(ca.clone().into_bytes()),
            ssl_mode: SslMode::Require,
        },
        Duration::from_secs(10),
    )
    .await
    .expect("the application's Secret logs in to its database");
    let owner: String = app
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "keycloak");

    // libpq (OpenSSL) takes the issued chain and names too: verify-full
    // by each name the certificate was made for, and not by another.
    let root = dir.path().join("issued-ca.crt");
    std::fs::write(&root, &ca).unwrap();
    let libpq = |host: &str| {
        let mut cmd = libpq_command("psql", pg.port(), "keycloak", &password, &dbname);
        cmd.arg("-XAtqc").arg("SELECT current_user").arg(format!(
            "host={host} hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={}",
            root.display()
        ));
        run_bounded(&mut cmd, Duration::from_secs(20))
    };
    for host in [
        format!("main.{NS}.svc"),
        format!("main-replicas.{NS}.svc.cluster.local"),
        format!("main-1.main-pods.{NS}.svc"),
    ] {
        let out = libpq(&host);
        assert_eq!(psql_ok(&out), "keycloak", "{host}");
    }
    let out = libpq("elsewhere.example");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match host name"), "{stderr}");

    // Converged: the next reconcile changes nothing and fails on nothing;
    // it does not even connect (the primary is down and it succeeds).
    let before = rolpassword(&pg, &su, "keycloak").await;
    reconcile(&client, &tls)
        .await
        .expect("a converged reconcile");
    assert_eq!(rolpassword(&pg, &su, "keycloak").await, before);
    let mut pg = pg;
    pg.stop();
    reconcile(&client, &tls)
        .await
        .expect("nothing changed: no connection to the primary");
    pg.restart();

    // A user added to the spec is a change: the next reconcile connects
    // and creates it.
    let api: Api<PostgresCluster> = Api::namespaced(client.clone(), NS);
    let mut cluster = api.get("main").await.unwrap();
    cluster.spec.users.push(
        serde_json::from_value(json!({"name": "reporter", "databases": ["keycloak"]})).unwrap(),
    );
    api.replace("main", &Default::default(), &cluster)
        .await
        .unwrap();
    reconcile(&client, &tls)
        .await
        .expect("reconcile with a new user");
    assert!(role_exists(&pg, &su, "reporter").await);
}
