//! auth_query against a real PostgreSQL with the lookup function shipped
//! in docs/security.md: users the auth file does not list log in with the
//! verifier the function returns (and pgwolf logs in to the server with
//! their ClientKey); superusers, roles past VALID UNTIL and unknown users
//! are refused exactly like a wrong password.

use pgwolf_tests::fixture::userlist;
use pgwolf_tests::tools::workspace_dir;
use pgwolf_tests::{try_connect, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER};

/// The SQL between the ```sql fences after "## auth_query" in
/// docs/security.md: the test installs exactly what the docs tell users to.
fn lookup_function_from_docs() -> String {
    let doc = std::fs::read_to_string(workspace_dir().join("docs/security.md"))
        .expect("docs/security.md");
    let section = doc
        .split("## auth_query")
        .nth(1)
        .expect("an auth_query section");
    let sql = section
        .split("```sql")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a sql block");
    sql.to_string()
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_missing_from_the_auth_file_are_looked_up() {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    pg.create_user("pgwolf_auth", "lookup-pw").await;
    pg.create_user("boss", "boss-pw").await;
    pg.create_user("gone", "gone-pw").await;
    pg.execute(
        "postgres",
        "ALTER ROLE boss SUPERUSER; ALTER ROLE gone VALID UNTIL '2001-01-01'",
    )
    .await;
    pg.execute(APP_DB, &lookup_function_from_docs()).await;

    let config = format!(
        "auth_type = \"scram-sha-256\"\npool_mode = \"transaction\"\n\
         auth_user = \"pgwolf_auth\"\n\
         auth_query = \"SELECT uname, phash FROM pgwolf.user_lookup($1)\"\n\n\
         [databases.appdb]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"appdb\"\npool_size = 2\n",
        pg.port()
    );
    // Only the lookup user is in the auth file.
    let proxy = Pgwolf::start(&config, &userlist(&[("pgwolf_auth", "lookup-pw")]));

    let app = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect("a user found by auth_query logs in");
    let who = app
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(who.get::<_, String>(0), APP_USER);
    // Again, from the cache, and a second server connection with the key.
    app.batch_execute("BEGIN").await.unwrap();
    let again = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect("second login");
    again.simple_query("SELECT 1").await.unwrap();
    app.batch_execute("COMMIT").await.unwrap();

    for (user, password, why) in [
        (APP_USER, "wrong", "a wrong password"),
        ("boss", "boss-pw", "a superuser (the function hides them)"),
        ("gone", "gone-pw", "a role past VALID UNTIL"),
        ("nobody", "x", "an unknown user"),
    ] {
        let e = try_connect(proxy.port(), user, password, APP_DB)
            .await
            .expect_err(why);
        assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{why}: {e}");
        let message = e.as_db_error().unwrap().message().to_string();
        assert_eq!(
            message,
            format!("password authentication failed for user \"{user}\""),
            "{why}: the same answer whether the user exists or not"
        );
    }
}
