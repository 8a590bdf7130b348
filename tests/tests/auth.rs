//! Client authentication at pgwolf: each auth_type, userlist secret forms,
//! and the SQLSTATEs clients see for bad credentials or unknown databases.

use pgwolf_tests::clients::sqlstate;
use pgwolf_tests::fixture::userlist;
use pgwolf_tests::{
    try_connect, within, Fixture, FixtureOptions, PgServer, Pgwolf, PoolMode, APP_DB, APP_PASSWORD,
    APP_USER,
};

async fn current_user(client: &tokio_postgres::Client) -> String {
    within(
        15,
        "SELECT current_user",
        client.query_one("SELECT current_user::text", &[]),
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_right_password_logs_in() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let client = fx.connect().await;
    assert_eq!(current_user(&client).await, APP_USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_28p01() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let err = try_connect(fx.port(), APP_USER, "not-the-password", APP_DB)
        .await
        .expect_err("wrong password accepted");
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
    // The proxy keeps serving others.
    let client = fx.connect().await;
    assert_eq!(current_user(&client).await, APP_USER);
}

/// auth_failure_delay holds the refusal back; other clients are served
/// meanwhile, and the delay is the same for an unknown user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_wait_auth_failure_delay() {
    let opts =
        FixtureOptions::new(PoolMode::Transaction, 2).setting("auth_failure_delay = \"1500ms\"");
    let fx = Fixture::with(opts).await;
    let port = fx.port();
    let guess = |user: &'static str| {
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let e = try_connect(port, user, "guess", APP_DB)
                .await
                .expect_err("a guess logged in");
            (started.elapsed(), sqlstate(&e).map(str::to_string))
        })
    };
    let (wrong, unknown) = (guess(APP_USER), guess("nobody-here"));
    // While both wait, a real login goes through.
    let client = fx.connect().await;
    assert_eq!(current_user(&client).await, APP_USER);
    for (took, code) in [wrong.await.unwrap(), unknown.await.unwrap()] {
        assert_eq!(code.as_deref(), Some("28P01"));
        assert!(
            took >= std::time::Duration::from_millis(1500),
            "refused after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_is_refused() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let err = try_connect(fx.port(), "mallory", "whatever", APP_DB)
        .await
        .expect_err("unknown user accepted");
    let code = sqlstate(&err).unwrap_or_else(|| panic!("no SQLSTATE: {err:?}"));
    assert!(
        code.starts_with("28"),
        "expected class 28 (invalid authorization), got {code}: {err:?}"
    );
}

/// The salt and iteration count pgwolf's first SCRAM message offers
/// `user`: a raw exchange that stops there.
async fn scram_challenge(port: u16, user: &str) -> (String, String) {
    use pgwolf_tests::wire::{message, read_message, startup_packet};
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let startup = startup_packet(&[("user", user), ("database", APP_DB)]);
    s.write_all(&startup).await.unwrap();
    let (tag, sasl) = within(10, "AuthenticationSASL", read_message(&mut s)).await;
    assert_eq!((tag, &sasl[..4]), (b'R', &10i32.to_be_bytes()[..]));
    let first = b"n,,n=,r=abcdefghijklmnopqrstuvwx";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    s.write_all(&message(b'p', &body)).await.unwrap();
    let (tag, cont) = within(10, "AuthenticationSASLContinue", read_message(&mut s)).await;
    assert_eq!((tag, &cont[..4]), (b'R', &11i32.to_be_bytes()[..]));
    let text = String::from_utf8(cont[4..].to_vec()).unwrap();
    let field = |name: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    (field("s="), field("i="))
}

/// A user that does not exist gets the same salt on every try, and the
/// same iteration count as a real one: comparing two challenges, as one
/// could before, no longer tells the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_s_challenge_is_as_stable_as_a_real_one_s() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let real = scram_challenge(fx.port(), APP_USER).await;
    assert_eq!(scram_challenge(fx.port(), APP_USER).await, real);
    let ghost = scram_challenge(fx.port(), "mallory").await;
    assert_eq!(scram_challenge(fx.port(), "mallory").await, ghost);
    assert_eq!(ghost.1, real.1, "iteration counts differ");
    assert_ne!(ghost.0, real.0);
    let other = scram_challenge(fx.port(), "trudy").await;
    assert_ne!(other.0, ghost.0, "every unknown user has one salt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_3d000() {
    let fx = Fixture::new(PoolMode::Transaction, 2).await;
    let err = try_connect(fx.port(), APP_USER, APP_PASSWORD, "no_such_db")
        .await
        .expect_err("unknown database accepted");
    assert_eq!(sqlstate(&err), Some("3D000"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_auth_type() {
    let fx = Fixture::with(FixtureOptions::new(PoolMode::Transaction, 2).auth_type("md5")).await;
    let client = fx.connect().await;
    assert_eq!(current_user(&client).await, APP_USER);
    let err = try_connect(fx.port(), APP_USER, "nope", APP_DB)
        .await
        .expect_err("wrong md5 password accepted");
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_auth_type() {
    let fx = Fixture::with(FixtureOptions::new(PoolMode::Transaction, 2).auth_type("plain")).await;
    let client = fx.connect().await;
    assert_eq!(current_user(&client).await, APP_USER);
    let err = try_connect(fx.port(), APP_USER, "nope", APP_DB)
        .await
        .expect_err("wrong cleartext password accepted");
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_auth_type_asks_no_password() {
    let fx = Fixture::with(FixtureOptions::new(PoolMode::Transaction, 2).auth_type("trust")).await;
    let client = try_connect(fx.port(), APP_USER, "anything at all", APP_DB)
        .await
        .unwrap();
    assert_eq!(current_user(&client).await, APP_USER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_hash_in_userlist() {
    // userlist holds "md5" + md5(password + user), as PgBouncer's does.
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    let admin = pg.superuser("postgres").await;
    let row = admin
        .query_one("SELECT 'md5' || md5($1 || $2)", &[&APP_PASSWORD, &APP_USER])
        .await
        .unwrap();
    let hash: String = row.get(0);
    // The server login needs the password itself: give it in the database entry.
    let config = format!(
        "auth_type = \"md5\"\n\n[databases.appdb]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"appdb\"\nuser = \"app\"\npassword = \"{APP_PASSWORD}\"\npool_size = 2\n",
        pg.port()
    );
    let proxy = Pgwolf::start(&config, &userlist(&[(APP_USER, &hash)]));
    let client = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    assert_eq!(current_user(&client).await, APP_USER);
    let err = try_connect(proxy.port(), APP_USER, "bad", APP_DB)
        .await
        .expect_err("wrong password accepted");
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_verifier_in_userlist() {
    // userlist holds the SCRAM verifier from pg_authid, not the password.
    let pg = PgServer::start();
    pg.create_user(APP_USER, APP_PASSWORD).await;
    pg.create_db(APP_DB, APP_USER).await;
    let verifier = pg.password_verifier(APP_USER).await;
    let config = format!(
        "auth_type = \"scram-sha-256\"\n\n[databases.appdb]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"appdb\"\nuser = \"app\"\npassword = \"{APP_PASSWORD}\"\npool_size = 2\n",
        pg.port()
    );
    let proxy = Pgwolf::start(&config, &userlist(&[(APP_USER, &verifier)]));
    let client = try_connect(proxy.port(), APP_USER, APP_PASSWORD, APP_DB)
        .await
        .unwrap();
    assert_eq!(current_user(&client).await, APP_USER);
    let err = try_connect(proxy.port(), APP_USER, "bad", APP_DB)
        .await
        .expect_err("wrong password accepted");
    assert_eq!(sqlstate(&err), Some("28P01"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_server_user_in_database_entry() {
    // The database entry's user/password log in to PostgreSQL whoever the client is.
    let pg = PgServer::start();
    pg.create_user("owner", "owner-pw").await;
    pg.create_db(APP_DB, "owner").await;
    let config = format!(
        "auth_type = \"scram-sha-256\"\n\n[databases.appdb]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"appdb\"\nuser = \"owner\"\npassword = \"owner-pw\"\npool_size = 2\n",
        pg.port()
    );
    let proxy = Pgwolf::start(
        &config,
        &userlist(&[("alice", "alice-pw"), ("bob", "bob-pw")]),
    );
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        let client = try_connect(proxy.port(), user, password, APP_DB)
            .await
            .unwrap();
        assert_eq!(current_user(&client).await, "owner");
    }
}
