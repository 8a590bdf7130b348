//! auth_query against a real PostgreSQL with the lookup function shipped
//! in docs/security.md: users the auth file does not list log in with the
//! verifier the function returns (and pgwolf logs in to the server with
//! their ClientKey); superusers, roles past VALID UNTIL and unknown users
//! are refused exactly like a wrong password.

use pgwolf_tests::fixture::userlist;
use pgwolf_tests::tools::auth_query_function_from_docs;
use pgwolf_tests::{try_connect, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER};

/// pgwolf in front of `pg` with only the lookup user in its auth file, the
/// lookup running in `authdb`.
fn lookup_proxy(pg: &PgServer, ttl: &str, max_entries: usize) -> Pgwolf {
    let config = format!(
        "auth_type = \"scram-sha-256\"\npool_mode = \"transaction\"\n\
         auth_user = \"pgwolf_auth\"\n\
         auth_query = \"SELECT uname, phash FROM pgwolf.user_lookup($1)\"\n\
         auth_dbname = \"authdb\"\n\
         auth_cache_ttl = \"{ttl}\"\nauth_cache_max_entries = {max_entries}\n\n\
         [databases.appdb]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"appdb\"\npool_size = 2\n\n\
         [databases.authdb]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"authdb\"\npool_size = 1\n",
        port = pg.port()
    );
    Pgwolf::start(&config, &userlist(&[("pgwolf_auth", "lookup-pw")]))
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
    pg.execute(APP_DB, &auth_query_function_from_docs()).await;

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

/// auth_dbname: the function exists only in `authdb`, so every login below
/// proves the lookup ran there. The cache: a user created after a refused
/// login stays refused until auth_cache_ttl has passed, and once
/// auth_cache_max_entries users are remembered a refusal is not, while a
/// found user still is (and logs in to the server with its key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_dbname_and_the_cache_s_ttl_and_size() {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    pg.create_user("pgwolf_auth", "lookup-pw").await;
    pg.create_db("authdb", "pgwolf_auth").await;
    pg.execute("authdb", &auth_query_function_from_docs()).await;
    let grant = |role: &str| format!("GRANT CONNECT ON DATABASE appdb TO {role}");
    let login = |port: u16, user: &'static str, password: &'static str| async move {
        try_connect(port, user, password, APP_DB).await.map(|_| ())
    };

    let proxy = lookup_proxy(&pg, "1h", 2);
    login(proxy.port(), APP_USER, APP_PASSWORD)
        .await
        .expect("found through the function in authdb");
    assert!(login(proxy.port(), "late", "late-pw").await.is_err());
    pg.create_user("late", "late-pw").await;
    pg.execute("postgres", &grant("late")).await;
    let e = login(proxy.port(), "late", "late-pw").await.unwrap_err();
    assert_eq!(
        sqlstate(&e).as_deref(),
        Some("28P01"),
        "the lack of a secret is cached for the TTL: {e}"
    );
    // The cache holds app and late: extra's refusal is not remembered...
    assert!(login(proxy.port(), "extra", "extra-pw").await.is_err());
    pg.create_user("extra", "extra-pw").await;
    pg.execute("postgres", &grant("extra")).await;
    login(proxy.port(), "extra", "extra-pw")
        .await
        .expect("a full cache keeps no new entry, so extra is looked up again");
    // ...and extra, found, took late's place: late is looked up anew.
    login(proxy.port(), "late", "late-pw")
        .await
        .expect("the refusal of late was pushed out by a found user");
    let app = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    app.simple_query("SELECT 1").await.unwrap();
    drop(proxy);

    let proxy = lookup_proxy(&pg, "300ms", 100);
    assert!(login(proxy.port(), "later", "later-pw").await.is_err());
    pg.create_user("later", "later-pw").await;
    pg.execute("postgres", &grant("later")).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    login(proxy.port(), "later", "later-pw")
        .await
        .expect("looked up again once the TTL has passed");
}
