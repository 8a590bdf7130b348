//! Debian's `prometheus-pgbouncer-exporter`, unchanged, pointed at pgwolf's
//! admin console: it starts, and its metrics carry pgwolf's pools, their
//! client counts and request totals. (Against Debian's own PgBouncer 1.18
//! this exporter, 1.7, fails at start: it reads SHOW STATS'
//! `total_requests`, which PgBouncer renamed in 1.8; pgwolf keeps that
//! column too, last.)

use pgwolf_tests::ha::http;
use pgwolf_tests::tools::run_bounded;
use pgwolf_tests::{
    free_port, within, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER,
};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXPORTER: &str = "prometheus-pgbouncer-exporter";

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the sample whose line starts with `series` (name and
/// labels as the exporter writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_exporter_reports_pgwolf_pools() {
    let version = run_bounded(
        Command::new(EXPORTER).arg("--version"),
        Duration::from_secs(30),
    );
    assert!(
        version.status.success(),
        "{EXPORTER} (Debian package prometheus-pgbouncer-exporter; scripts/install-deps installs it)"
    );
    let opts = FixtureOptions::new(PoolMode::Transaction, 3)
        .setting(&format!("stats_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let app = fx.connect().await;
    for _ in 0..5 {
        app.simple_query("SELECT 1").await.unwrap();
    }

    let port = free_port();
    let child = Command::new(EXPORTER)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--pgbouncer-host", "127.0.0.1"])
        .args(["--pgbouncer-port", &fx.port().to_string()])
        .args(["--pgbouncer-user", APP_USER])
        .env("PGPASSWORD", APP_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exporter");
    let mut exporter = Exporter(child);

    let text = within(60, "the exporter's first scrape", async {
        let deadline = Instant::now() + Duration::from_secs(50);
        loop {
            if let Ok(r) = http::get(port, "/metrics", Duration::from_secs(10)) {
                if r.status == 200 {
                    return r.body;
                }
            }
            if let Ok(Some(status)) = exporter.0.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = exporter.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("the exporter exited ({status}):\n{err}");
            }
            assert!(Instant::now() < deadline, "the exporter never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    let pool = format!("{{database=\"{APP_DB}\",user=\"{APP_USER}\"}}");
    let db = format!("{{database=\"{APP_DB}\"}}");
    assert_eq!(
        sample(&text, &format!("pgbouncer_active_clients{pool}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("pgbouncer_waiting_clients{pool}")),
        Some(0.0)
    );
    let requests = sample(&text, &format!("pgbouncer_requests_total{db}")).expect("requests");
    assert!(requests >= 5.0, "requests_total {requests}:\n{text}");
    let sent = sample(&text, &format!("pgbouncer_sent_bytes_total{db}")).expect("sent bytes");
    assert!(sent > 0.0, "{text}");
    assert_eq!(
        sample(&text, &format!("pgbouncer_pool_size{db}")),
        Some(3.0)
    );
    assert_eq!(sample(&text, "pgbouncer_pools "), Some(1.0), "{text}");
    assert_eq!(sample(&text, "pgbouncer_used_clients "), Some(1.0));
    drop(app);
}
