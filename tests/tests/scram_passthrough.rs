//! SCRAM pass-through: the auth file holds only the SCRAM verifier that
//! PostgreSQL stores (`pg_authid.rolpassword`) and no config names a
//! password, yet pgwolf logs in to PostgreSQL as the client's user, with
//! the ClientKey recovered from the client's own proof.

use pgwolf_tests::fixture::userlist;
use pgwolf_tests::{try_connect, within, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER};

fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_to_the_server_with_the_client_s_key() {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    pg.create_user("bob", "bob-pw").await;
    let app_verifier = pg.password_verifier(APP_USER).await;
    let stale_bob = pg.password_verifier("bob").await;
    // The same password again: the server now holds a verifier with
    // another salt, and the auth file a stale one.
    pg.execute(
        "postgres",
        "SET password_encryption = 'scram-sha-256'; ALTER ROLE bob PASSWORD 'bob-pw'",
    )
    .await;
    pg.execute("postgres", "GRANT CONNECT ON DATABASE appdb TO bob")
        .await;

    let config = format!(
        "auth_type = \"scram-sha-256\"\npool_mode = \"transaction\"\n\n\
         [databases.appdb]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"appdb\"\npool_size = 2\n",
        pg.port()
    );
    let users = userlist(&[(APP_USER, &app_verifier), ("bob", &stale_bob)]);
    assert!(!config.contains(APP_PASSWORD) && !users.contains(APP_PASSWORD));
    assert!(users.contains("SCRAM-SHA-256$"), "{users}");
    let proxy = Pgwolf::start(&config, &users);

    let a = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect("login through pass-through");
    let who = a.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(who.get::<_, String>(0), APP_USER);
    // Two transactions at once: a second server connection, logged in
    // with the same key.
    a.batch_execute("BEGIN").await.unwrap();
    let b = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    let pids = within(30, "a second server connection", async {
        let pa = a.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
        let pb = b.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
        (pa.get::<_, i32>(0), pb.get::<_, i32>(0))
    })
    .await;
    assert_ne!(pids.0, pids.1, "both transactions on one server connection");
    a.batch_execute("COMMIT").await.unwrap();

    let e = try_connect(proxy.port(), APP_USER, "wrong", APP_DB)
        .await
        .expect_err("a wrong password");
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"));

    // The client proves itself against the auth file's verifier, but the
    // server's verifier differs: the client is refused as PostgreSQL would
    // refuse it (28P01, not a hang or a bad proof sent), and the operator
    // reads why in the log.
    let e = try_connect(proxy.port(), "bob", "bob-pw", APP_DB)
        .await
        .expect_err("a stale verifier cannot log in to the server");
    let d = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        (d.code().code(), d.message()),
        ("28P01", "password authentication failed for user \"bob\"")
    );
    let log = proxy.log();
    assert!(
        log.contains("SCRAM pass-through refused")
            && log.contains("copy pg_authid.rolpassword again"),
        "{log}"
    );
}
