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
