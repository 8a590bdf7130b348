//! PgBouncer's security history, the items that involve the server: each
//! test names the CVE it replays against pgwolf and a real PostgreSQL 15,
//! and checks that pgwolf decides a login as PostgreSQL decides it when
//! asked directly. docs/security.md has the table.

use pgwolf_tests::tools::auth_query_function_from_docs;
use pgwolf_tests::{
    sqlstate, try_connect, userlist, within, PgServer, Pgwolf, APP_DB, APP_PASSWORD, APP_USER,
};
use std::time::Duration;

/// What became of a login: Ok, or the SQLSTATE it was refused with.
async fn outcome(port: u16, user: &str, password: &str, db: &str) -> Result<(), String> {
    match try_connect(port, user, password, db).await {
        Ok(c) => c
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| format!("{e}")),
        Err(e) => Err(sqlstate(&e)
            .map(str::to_string)
            .unwrap_or_else(|| format!("no SQLSTATE: {e}"))),
    }
}

/// PostgreSQL with `app`/`appdb` and a superuser lookup role.
async fn server() -> PgServer {
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    pg.create_user("pgwolf_auth", "lookup-pw").await;
    pg
}

/// pgwolf in front of `pg` with only the lookup role in its auth file.
fn lookup_proxy(pg: &PgServer, settings: &str) -> Pgwolf {
    let config = format!(
        "auth_type = \"scram-sha-256\"\npool_mode = \"transaction\"\n\
         auth_user = \"pgwolf_auth\"\nauth_failure_delay = \"0s\"\n{settings}\n\n\
         [databases.appdb]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"appdb\"\npool_size = 2\n",
        pg.port()
    );
    Pgwolf::start(&config, &userlist(&[("pgwolf_auth", "lookup-pw")]))
}

/// CVE-2025-2291: PgBouncer's default auth_query ignored VALID UNTIL, so an
/// expired role logged in through the pooler while a server connection of
/// its was pooled. pgwolf's default lookup (here with a cache TTL of an
/// hour, so only the lookup itself can end a password) refuses expired
/// roles and roles that cannot log in, and a password that expires while
/// the role's server connection is pooled is refused at the next login:
/// the lookup said when it would expire, and the cache entry ends then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2025_2291_expired_passwords_are_refused_as_postgresql_refuses_them() {
    let pg = server().await;
    pg.execute("postgres", "ALTER ROLE pgwolf_auth SUPERUSER")
        .await;
    for role in ["expired", "forever", "cannot", "fleeting"] {
        pg.create_user(role, &format!("{role}-pw")).await;
    }
    pg.execute(
        "postgres",
        "ALTER ROLE expired VALID UNTIL '2001-01-01'; \
         ALTER ROLE forever VALID UNTIL 'infinity'; \
         ALTER ROLE cannot NOLOGIN",
    )
    .await;
    let proxy = lookup_proxy(&pg, "auth_cache_ttl = \"1h\"");

    for (user, password) in [
        ("expired", "expired-pw"),
        ("forever", "forever-pw"),
        ("forever", "wrong"),
        (APP_USER, APP_PASSWORD),
    ] {
        let direct = outcome(pg.port(), user, password, APP_DB).await;
        let through = outcome(proxy.port(), user, password, APP_DB).await;
        assert_eq!(through, direct, "{user} with {password}");
    }
    assert_eq!(
        outcome(pg.port(), "expired", "expired-pw", APP_DB).await,
        Err("28P01".into())
    );
    // PostgreSQL checks the password first and then says 28000 "not
    // permitted to log in"; pgwolf refuses without telling the role exists.
    assert_eq!(
        outcome(pg.port(), "cannot", "cannot-pw", APP_DB).await,
        Err("28000".into())
    );
    assert_eq!(
        outcome(proxy.port(), "cannot", "cannot-pw", APP_DB).await,
        Err("28P01".into())
    );

    // Valid for a few seconds: in, pooled, expired, out.
    pg.execute(
        "postgres",
        "DO $$ BEGIN EXECUTE format('ALTER ROLE fleeting VALID UNTIL %L', \
         now() + interval '3 seconds'); END $$",
    )
    .await;
    let before = try_connect(proxy.port(), "fleeting", "fleeting-pw", APP_DB)
        .await
        .expect("not expired yet");
    before.simple_query("SELECT 1").await.unwrap();
    drop(before);
    within(10, "the password to expire for PostgreSQL", async {
        while outcome(pg.port(), "fleeting", "fleeting-pw", APP_DB)
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(
        pg.backend_count("fleeting", APP_DB).await,
        1,
        "pgwolf still pools a server connection of the role"
    );
    assert_eq!(
        outcome(proxy.port(), "fleeting", "fleeting-pw", APP_DB).await,
        Err("28P01".into()),
        "an hour's cache TTL does not carry a password past VALID UNTIL"
    );

    // VALID UNTIL moved into the past after the lookup: the TTL bounds it.
    drop(proxy);
    let proxy = lookup_proxy(&pg, "auth_cache_ttl = \"1s\"");
    outcome(proxy.port(), "forever", "forever-pw", APP_DB)
        .await
        .expect("valid");
    pg.execute("postgres", "ALTER ROLE forever VALID UNTIL '2001-01-01'")
        .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        outcome(proxy.port(), "forever", "forever-pw", APP_DB).await,
        Err("28P01".into())
    );
}

/// A lookup that ignores VALID UNTIL (PgBouncer's old default, still in
/// many configs) returns an expired role's verifier; with no pooled
/// connection, PostgreSQL then answers pgwolf's pass-through login with a
/// made-up salt. The client hears 28P01 as from PostgreSQL, and the log
/// tells the operator what happened, and at start that the query is unsafe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_through_login_postgresql_refuses_is_28p01_with_the_reason_logged() {
    let pg = server().await;
    pg.execute("postgres", "ALTER ROLE pgwolf_auth SUPERUSER")
        .await;
    pg.create_user("expired", "expired-pw").await;
    pg.execute("postgres", "ALTER ROLE expired VALID UNTIL '2001-01-01'")
        .await;
    let proxy = lookup_proxy(
        &pg,
        "auth_query = \"SELECT usename, passwd FROM pg_shadow WHERE usename=$1\"",
    );
    let e = try_connect(proxy.port(), "expired", "expired-pw", APP_DB)
        .await
        .expect_err("PostgreSQL refuses the role");
    let d = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(
        (d.code().code(), d.message()),
        (
            "28P01",
            "password authentication failed for user \"expired\""
        )
    );
    let log = proxy.log();
    assert!(
        log.contains("SCRAM pass-through refused") && log.contains("VALID UNTIL"),
        "{log}"
    );
    assert!(
        log.contains("without checking VALID UNTIL"),
        "the query is warned about at start: {log}"
    );
    assert!(!log.contains("expired-pw"), "no secret in the log");
}

/// The verifier PostgreSQL makes for `password` (via a throwaway role).
async fn verifier_for(pg: &PgServer, password: &str) -> String {
    pg.create_user("throwaway", password).await;
    let v = pg.password_verifier("throwaway").await;
    pg.execute("postgres", "DROP ROLE throwaway").await;
    v
}

/// CVE-2025-12819: the client's search_path steered PgBouncer's auth_query,
/// so an unauthenticated client ran it against objects of its choosing.
/// Here the lookup role's search_path puts a schema a user controls first
/// (`ALTER ROLE ... SET`: what a startup parameter, a client of auth_user
/// or a role default can all do), that user plants a `pg_shadow` view
/// that gives the victim a password of the user's choosing, and the
/// lookup is PgBouncer's old unqualified query. The lookup still reads
/// the catalog: the planted password is refused, as PostgreSQL refuses
/// it, while the victim's own works and a server connection of the
/// victim's is pooled (which is what would let the planted one in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2025_12819_no_search_path_steers_the_lookup() {
    let pg = server().await;
    pg.create_user("victim", "victim-pw").await;
    pg.execute(
        "postgres",
        "ALTER ROLE pgwolf_auth SUPERUSER; \
         ALTER ROLE pgwolf_auth SET search_path = evil, pg_catalog",
    )
    .await;
    let planted = verifier_for(&pg, "planted-pw").await;
    let proxy = lookup_proxy(
        &pg,
        "auth_query = \"SELECT usename, passwd FROM pg_shadow WHERE usename=$1\"\n\
         auth_cache_ttl = \"100ms\"",
    );
    outcome(proxy.port(), "victim", "victim-pw", APP_DB)
        .await
        .expect("the victim logs in");

    let attacker = try_connect(pg.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    attacker
        .batch_execute(&format!(
            "CREATE SCHEMA evil; \
             CREATE VIEW evil.pg_shadow AS \
             SELECT 'victim'::name AS usename, '{planted}'::text AS passwd; \
             GRANT USAGE ON SCHEMA evil TO PUBLIC; \
             GRANT SELECT ON evil.pg_shadow TO PUBLIC"
        ))
        .await
        .unwrap();
    // The role's default applies: a session of pgwolf_auth sees the plant.
    let lookup_role = try_connect(pg.port(), "pgwolf_auth", "lookup-pw", APP_DB)
        .await
        .unwrap();
    let seen: String = lookup_role
        .query_one("SELECT passwd FROM pg_shadow WHERE usename = 'victim'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, planted,
        "the plant is what an unqualified lookup reads"
    );
    assert!(pg.backend_count("victim", APP_DB).await >= 1);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let direct = outcome(pg.port(), "victim", "planted-pw", APP_DB).await;
    let through = outcome(proxy.port(), "victim", "planted-pw", APP_DB).await;
    assert_eq!(direct, Err("28P01".into()));
    assert_eq!(through, direct, "the planted password");
    outcome(proxy.port(), "victim", "victim-pw", APP_DB)
        .await
        .expect("the victim's own password still works");
}

/// CVE-2015-6817: with auth_user set, PgBouncer logged a client asking for
/// a user that does not exist in as auth_user. Under every password method,
/// with the docs' lookup function, with a lookup that fails (no function in
/// that database) and with auth_user's own password, such a client is
/// refused like a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2015_6817_an_unknown_user_is_never_logged_in_as_auth_user() {
    let pg = server().await;
    pg.create_db("nofunction", APP_USER).await;
    pg.execute(APP_DB, &auth_query_function_from_docs()).await;
    for auth_type in ["scram-sha-256", "md5", "plain"] {
        let config = format!(
            "auth_type = \"{auth_type}\"\npool_mode = \"transaction\"\n\
             auth_user = \"pgwolf_auth\"\nauth_failure_delay = \"0s\"\n\
             auth_query = \"SELECT uname, phash, expires_in FROM pgwolf.user_lookup($1)\"\n\n\
             [databases.appdb]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"appdb\"\n\n\
             [databases.nofunction]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"nofunction\"\n",
            port = pg.port()
        );
        let proxy = Pgwolf::start(&config, &userlist(&[("pgwolf_auth", "lookup-pw")]));
        for (db, password) in [
            (APP_DB, "x"),
            (APP_DB, "lookup-pw"),
            (APP_DB, ""),
            ("nofunction", "lookup-pw"),
        ] {
            let e = try_connect(proxy.port(), "ghost", password, db)
                .await
                .expect_err("ghost does not exist");
            let d = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{auth_type}: {e:?}"));
            assert_eq!(
                (d.code().code(), d.message()),
                ("28P01", "password authentication failed for user \"ghost\""),
                "{auth_type}, {db}, {password:?}"
            );
        }
        // Found by the lookup: the same methods do let a real user in.
        outcome(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
            .await
            .unwrap_or_else(|e| panic!("{auth_type}: {e}"));
    }
}

/// CVE-2012-4575: an over-long database name from the network crashed
/// PgBouncer with auto-databases (`*`). pgwolf cuts user and database
/// names to 63 bytes as PostgreSQL does, so a long name means to pgwolf
/// what it means to the server: here through a `*` entry, a 9,000-byte
/// database or user name is refused with PostgreSQL's own SQLSTATE, and a
/// 100-byte one whose first 63 bytes name a database reaches it, as
/// directly. Names the server does not have leave no pool behind, whether
/// the client authenticated or only made pgwolf look it up (auth_query
/// runs in the client's database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2012_4575_over_long_names_are_cut_as_postgresql_cuts_them() {
    let pg = server().await;
    pg.execute("postgres", "ALTER ROLE pgwolf_auth SUPERUSER")
        .await;
    let db63 = "d".repeat(63);
    pg.create_db(&db63, APP_USER).await;
    let config = format!(
        "auth_type = \"scram-sha-256\"\npool_mode = \"transaction\"\n\
         auth_failure_delay = \"0s\"\nauth_user = \"pgwolf_auth\"\n\
         admin_users = [\"{APP_USER}\"]\nmax_db_connections = 50\n\n\
         [databases.\"*\"]\nhost = \"127.0.0.1\"\nport = {}\npool_size = 1\n",
        pg.port()
    );
    let proxy = Pgwolf::start(
        &config,
        &userlist(&[(APP_USER, APP_PASSWORD), ("pgwolf_auth", "lookup-pw")]),
    );
    let long_db = format!("{db63}{}", "e".repeat(37));
    let huge_db = "x".repeat(9_000);
    let huge_user = "u".repeat(9_000);
    for (user, db, want) in [
        (APP_USER, long_db.as_str(), Ok(())),
        (APP_USER, huge_db.as_str(), Err("3D000".to_string())),
        (huge_user.as_str(), APP_DB, Err("28P01".to_string())),
        (
            &huge_user[..4_000],
            &huge_db[..4_000],
            Err("28P01".to_string()),
        ),
        (APP_USER, APP_DB, Ok(())),
    ] {
        let direct = outcome(pg.port(), user, APP_PASSWORD, db).await;
        let through = outcome(proxy.port(), user, APP_PASSWORD, db).await;
        let what = format!("user {} bytes, database {} bytes", user.len(), db.len());
        assert_eq!(direct, want, "directly: {what}");
        assert_eq!(through, direct, "through pgwolf: {what}");
    }
    for i in 0..20 {
        let made_up = format!("madeup_{i}");
        let e = outcome(proxy.port(), "ghost", "x", &made_up).await;
        assert_eq!(
            e,
            Err("28P01".into()),
            "an unknown user, looked up in {made_up}"
        );
        let e = outcome(proxy.port(), APP_USER, APP_PASSWORD, &made_up).await;
        assert_eq!(e, Err("3D000".into()), "{made_up}");
    }
    let console = try_connect(proxy.port(), APP_USER, APP_PASSWORD, "pgwolf")
        .await
        .unwrap();
    let mut pools: Vec<String> = console
        .simple_query("SHOW POOLS")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(format!("{}/{}", r.get("database")?, r.get("user")?))
            }
            _ => None,
        })
        .collect();
    pools.sort();
    assert_eq!(
        pools,
        [
            format!("{APP_DB}/{APP_USER}"),
            format!("{APP_DB}/pgwolf_auth"),
            format!("{db63}/{APP_USER}"),
        ],
        "only databases the server has keep a pool"
    );
    let log = proxy.log();
    assert!(
        !log.contains(&"x".repeat(64)),
        "names are cut before logging"
    );
    assert!(!log.contains("panicked"), "{log}");
}
