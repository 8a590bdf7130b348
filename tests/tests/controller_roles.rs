//! The controller's `spec.users` in a real PostgreSQL 15: roles with the
//! SCRAM verifier from their Secret as password, databases owned by their
//! first user, grants for the others, and nothing planned once converged.

use pgwolf_controller::api::PostgresClusterSpec;
use pgwolf_controller::postgres::roles;
use pgwolf_controller::secrets::Credentials;
use pgwolf_tests::{try_connect, PgServer};
use rand::SeedableRng;

fn spec(alice_options: serde_json::Value) -> PostgresClusterSpec {
    serde_json::from_value(serde_json::json!({
        "users": [
            {"name": "alice", "databases": ["app"], "options": alice_options},
            {"name": "reporter", "databases": ["reports", "app"]}
        ]
    }))
    .unwrap()
}

fn summaries(steps: &[roles::Step]) -> Vec<String> {
    steps.iter().map(|s| s.summary.clone()).collect()
}

#[tokio::test]
async fn users_and_databases_converge_and_stay() {
    let pg = PgServer::start();
    let admin = pg.superuser("postgres").await;
    let spec = spec(serde_json::json!(["CREATEDB"]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let creds = Credentials::resolve(&spec, |_| None, &mut rng);

    let first = roles::ensure(&admin, &spec.users, &creds).await.unwrap();
    assert_eq!(first.len(), 5, "{:?}", summaries(&first));
    let again = roles::ensure(&admin, &spec.users, &creds).await.unwrap();
    assert!(again.is_empty(), "converged, yet: {:?}", summaries(&again));

    // The stored password is the Secret's verifier, byte for byte (what
    // SCRAM pass-through needs), and the Secret's password logs in with it.
    for user in ["alice", "reporter"] {
        assert_eq!(pg.password_verifier(user).await, creds.users[user].verifier);
    }
    let alice = try_connect(pg.port(), "alice", &creds.users["alice"].password, "app")
        .await
        .expect("alice logs in to app");
    let owner: String = alice
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "alice");
    alice
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("the owner creates tables");
    alice
        .batch_execute("CREATE DATABASE alices_scratch")
        .await
        .expect("the owner creates tables, and CREATEDB lets her create databases");

    // reporter owns reports; in app it may connect and create a schema.
    let reporter = try_connect(
        pg.port(),
        "reporter",
        &creds.users["reporter"].password,
        "app",
    )
    .await
    .expect("reporter logs in to app");
    reporter
        .batch_execute("CREATE SCHEMA reporting; CREATE TABLE reporting.r (id int)")
        .await
        .expect("reporter creates its schema in app");
    let err = reporter
        .batch_execute("CREATE DATABASE nope")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");

    // Dropping CREATEDB from the manifest: one ALTER, then converged.
    let spec = self::spec(serde_json::json!([]));
    let steps = roles::ensure(&admin, &spec.users, &creds).await.unwrap();
    assert_eq!(
        summaries(&steps),
        ["ALTER ROLE \"alice\" LOGIN NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"]
    );
    let can: bool = admin
        .query_one(
            "SELECT rolcreatedb FROM pg_roles WHERE rolname = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can);

    // Someone changed alice's password by hand: the Secret's comes back.
    admin
        .batch_execute("ALTER ROLE alice PASSWORD 'changed-by-hand'")
        .await
        .unwrap();
    let steps = roles::ensure(&admin, &spec.users, &creds).await.unwrap();
    assert_eq!(
        summaries(&steps),
        ["ALTER ROLE \"alice\" PASSWORD (its verifier)"]
    );
    try_connect(pg.port(), "alice", &creds.users["alice"].password, "app")
        .await
        .expect("the Secret's password works again");
    assert!(roles::ensure(&admin, &spec.users, &creds)
        .await
        .unwrap()
        .is_empty());
}
