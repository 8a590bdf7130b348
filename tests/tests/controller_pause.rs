//! The controller's rollout pauses and resumes the pooler through pgwolf's
//! admin console (controller/src/rollout/pooler.rs): here against a real
//! pgwolf in front of a real PostgreSQL.

use pgwolf_controller::rollout::pooler::{self, Console};
use pgwolf_tests::{within, Fixture, FixtureOptions, PoolMode, APP_PASSWORD, APP_USER};
use std::time::Duration;

async fn fixture() -> Fixture {
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    Fixture::with(opts).await
}

fn console(fx: &Fixture, password: &str) -> Console {
    Console {
        host: "127.0.0.1".into(),
        port: fx.port(),
        user: APP_USER.into(),
        password: password.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_the_open_transaction_holds_new_ones_and_resume_releases_them() {
    let fx = fixture().await;
    let c = console(&fx, APP_PASSWORD);
    let app = fx.connect().await;
    app.batch_execute("BEGIN; SELECT 1").await.unwrap();

    let pausing = {
        let c = c.clone();
        tokio::spawn(async move { pooler::pause(&c, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !pausing.is_finished(),
        "PAUSE returned with a transaction open"
    );
    app.batch_execute("COMMIT").await.unwrap();
    within(10, "PAUSE after COMMIT", pausing)
        .await
        .unwrap()
        .expect("PAUSE");

    let waiting = tokio::spawn(async move {
        let r = app.query_one("SELECT 41 + 1", &[]).await;
        r.map(|row| row.get::<_, i32>(0))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a transaction ran while paused");
    pooler::resume(&c, Duration::from_secs(5))
        .await
        .expect("RESUME");
    let r = within(10, "the held transaction", waiting).await.unwrap();
    assert_eq!(r.expect("no error after RESUME"), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_that_cannot_finish_in_time_is_an_error_and_resume_still_works() {
    let fx = fixture().await;
    let c = console(&fx, APP_PASSWORD);
    let app = fx.connect().await;
    app.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let err = pooler::pause(&c, Duration::from_millis(800))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PAUSE"), "{err}");
    pooler::resume(&c, Duration::from_secs(5))
        .await
        .expect("RESUME");
    app.batch_execute("COMMIT").await.unwrap();
    let other = fx.connect().await;
    let r = within(10, "a query after RESUME", other.query_one("SELECT 1", &[])).await;
    assert_eq!(r.unwrap().get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_that_does_not_show_it() {
    let fx = fixture().await;
    let wrong = "not-the-password-x9";
    let err = pooler::pause(&console(&fx, wrong), Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("28P01"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    assert!(!err.contains(APP_PASSWORD), "{err}");
}

/// The pooler as the controller renders it takes only TLS, with the
/// certificate the controller issued: libpq verifies it by the pooler
/// Service's name, plaintext is refused, and the rollout's PAUSE/RESUME
/// still get through (over TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_pooler_s_tls_serves_the_issued_certificate() {
    use pgwolf_tests::clients::{libpq_command, psql_ok};
    use pgwolf_tests::tools::run_bounded;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/cluster-with-pooler.yaml"
    ))
    .unwrap();
    let cluster = pgwolf_controller::render::parse_cluster(&text).unwrap();
    let creds = pgwolf_controller::resources::credentials(
        &cluster,
        |_| None,
        &mut rand::thread_rng(),
        pgwolf_controller::secrets::tls::today(),
    )
    .unwrap();
    let issued = creds.tls.expect("issued certificates");
    let rendered = pgwolf_controller::resources::pgwolf_config(
        &pgwolf_controller::resources::Owner::new(&cluster),
        cluster.spec.pooler.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(rendered.client_tls_sslmode.as_str(), "require");

    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    );
    std::fs::write(&cert, &issued.cert).unwrap();
    std::fs::write(&key, &issued.key).unwrap();
    std::fs::write(&ca, &issued.ca_cert).unwrap();
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&format!("admin_users = [\"{APP_USER}\"]"))
        .setting(&format!(
            "client_tls_sslmode = \"require\"\nclient_tls_cert_file = {cert:?}\nclient_tls_key_file = {key:?}"
        ));
    let fx = Fixture::with(opts).await;

    let psql = |conninfo: String| {
        let mut cmd = libpq_command("psql", fx.port(), APP_USER, APP_PASSWORD, "appdb");
        cmd.arg("-XAtqc").arg("SELECT 1").arg(conninfo);
        run_bounded(&mut cmd, Duration::from_secs(20))
    };
    let ns = cluster
        .metadata
        .namespace
        .clone()
        .unwrap_or("default".into());
    let verified = psql(format!(
        "host=main-pooler.{ns}.svc hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={}",
        ca.display()
    ));
    assert_eq!(psql_ok(&verified), "1");
    let plain = psql("host=127.0.0.1 sslmode=disable".into());
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("SSL connection is required"));

    let c = console(&fx, APP_PASSWORD);
    pooler::pause(&c, Duration::from_secs(10))
        .await
        .expect("PAUSE over TLS");
    pooler::resume(&c, Duration::from_secs(10))
        .await
        .expect("RESUME over TLS");
}
