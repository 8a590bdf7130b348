//! `auth_type = "hba"`: the first matching line of `auth_hba_file` picks
//! the method (SCRAM, cleartext, reject), no match refuses with
//! PostgreSQL's message, RELOAD picks up a changed file, a broken file is
//! refused with its line (at reload, the running rules stay; at `check`,
//! non-zero exit).

use pgwolf_tests::proxy::run_pgwolf;
use pgwolf_tests::{
    try_connect, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER,
};

fn refusal(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

const RULES: &str = "\
# appdb with SCRAM; the console with a cleartext password; nothing else.
host    appdb    app     127.0.0.1/32    scram-sha-256
host    pgwolf   app     127.0.0.1/32    password
host    otherdb  all     all             reject
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_lines_pick_the_method_and_refuse_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let hba = dir.path().join("hba.conf");
    std::fs::write(&hba, RULES).unwrap();
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .auth_type("hba")
        .setting(&format!("auth_hba_file = {:?}", hba))
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let port = fx.port();

    let app = fx.connect().await;
    app.simple_query("SELECT 1").await.unwrap();
    let e = try_connect(port, APP_USER, "wrong", APP_DB)
        .await
        .expect_err("wrong password");
    assert_eq!(refusal(&e).0, "28P01");

    let console = try_connect(port, APP_USER, APP_PASSWORD, "pgwolf")
        .await
        .expect("the console line allows a cleartext password");
    let e = try_connect(port, APP_USER, APP_PASSWORD, "pgbouncer")
        .await
        .expect_err("no line for the pgbouncer console");
    let (code, message) = refusal(&e);
    assert_eq!(code, "28000");
    assert_eq!(
        message,
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database \"pgbouncer\", no encryption"
    );
    let e = try_connect(port, APP_USER, APP_PASSWORD, "otherdb")
        .await
        .expect_err("reject line");
    let (code, message) = refusal(&e);
    assert_eq!(code, "28000");
    assert!(
        message.starts_with("pg_hba.conf rejects connection for host \"127.0.0.1\""),
        "{message}"
    );

    // appdb moves to reject: new logins are refused, a logged-in client stays.
    std::fs::write(&hba, format!("host appdb all all reject\n{RULES}")).unwrap();
    console.simple_query("RELOAD").await.unwrap();
    let e = try_connect(port, APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect_err("appdb is rejected after RELOAD");
    assert_eq!(refusal(&e).0, "28000");
    app.simple_query("SELECT 2")
        .await
        .expect("a logged-in client stays");

    // A broken file: RELOAD fails naming the line, the running rules stay.
    std::fs::write(
        &hba,
        "host pgwolf app 127.0.0.1/32 password\nhost all all all ident\n",
    )
    .unwrap();
    let e = console.simple_query("RELOAD").await.unwrap_err();
    let message = e.as_db_error().expect("RELOAD error").message().to_string();
    assert!(
        message.contains("auth_hba_file line 2: method `ident` is not supported"),
        "{message}"
    );
    try_connect(port, APP_USER, APP_PASSWORD, "pgwolf")
        .await
        .expect("the console line of the running rules");
    let e = try_connect(port, APP_USER, APP_PASSWORD, APP_DB)
        .await
        .expect_err("still rejected by the running rules");
    assert_eq!(refusal(&e).0, "28000");

    // `pgwolf check` refuses the same file.
    let out = run_pgwolf(&[
        "check".as_ref(),
        "--config".as_ref(),
        fx.proxy.config_path().as_os_str(),
    ]);
    assert!(
        !out.status.success(),
        "check accepted a broken auth_hba_file"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth_hba_file line 2"), "{stderr}");
}
