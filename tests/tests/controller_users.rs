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
use pgwolf_tests::certs::Ca;
use pgwolf_tests::tools::give_to_server_user;
use pgwolf_tests::{try_connect, PgOptions, PgServer};
use serde_json::json;
use std::time::Duration;
use tokio_postgres::config::SslMode;

const NS: &str = "demo";

/// A PostgreSQL with ssl = on and only hostssl lines for TCP.
fn tls_only_server(dir: &std::path::Path) -> PgServer {
    let ca = Ca::new("pg-ca");
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
    pg
}

/// The test's own superuser connection: over the Unix socket, which the
/// hostssl-only rules leave open (`local` line).
async fn superuser(pg: &PgServer) -> tokio_postgres::Client {
    let socket_dir = pg.data_dir().parent().unwrap().to_path_buf();
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(socket_dir)
        .port(pg.port())
        .user(pgwolf_tests::SUPERUSER)
        .password(current_superuser_password())
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("superuser over the Unix socket");
    tokio::spawn(connection);
    client
}

// The test changes the superuser's password to the controller's; the
// socket login follows it.
static SUPERUSER_PASSWORD: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn current_superuser_password() -> String {
    let p = SUPERUSER_PASSWORD.lock().unwrap();
    if p.is_empty() {
        pgwolf_tests::SUPERUSER_PASSWORD.to_string()
    } else {
        p.clone()
    }
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

fn settings(pg: &PgServer, ssl_mode: SslMode) -> Settings {
    Settings {
        postgres: Some(PostgresAccess {
            host: Some("127.0.0.1".into()),
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

async fn role_exists(pg: &PgServer, name: &str) -> bool {
    superuser(pg)
        .await
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_user_and_database_appear_once_there_is_a_primary() {
    let dir = tempfile::tempdir().unwrap();
    let pg = tls_only_server(dir.path());
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
    assert!(!role_exists(&pg, "keycloak").await);

    // What Spilo does with PGPASSWORD_SUPERUSER from the Secret, and what
    // Patroni writes once it has a leader.
    let superuser_password = secret_value(&client, "main-postgres-credentials", "password").await;
    superuser(&pg)
        .await
        .execute(
            &format!("ALTER ROLE postgres PASSWORD '{superuser_password}'"),
            &[],
        )
        .await
        .unwrap();
    *SUPERUSER_PASSWORD.lock().unwrap() = superuser_password.clone();
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
    assert!(!err.to_string().contains(&superuser_password), "{err}");
    assert!(!role_exists(&pg, "keycloak").await);

    reconcile(&client, &tls)
        .await
        .expect("reconcile with a primary");
    let password = secret_value(&client, "keycloak-db", "password").await;
    let dbname = secret_value(&client, "keycloak-db", "dbname").await;
    assert_eq!(dbname, "keycloak");
    let app = connect::connect(
        &connect::Target {
            host: "127.0.0.1".into(),
            port: pg.port(),
            user: "keycloak".into(),
            password,
            dbname,
            ca_pem: None,
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

    // Converged: the next reconcile changes nothing and fails on nothing.
    let before: String = superuser(&pg)
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'keycloak'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    reconcile(&client, &tls)
        .await
        .expect("a converged reconcile");
    let after: String = superuser(&pg)
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'keycloak'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
}
