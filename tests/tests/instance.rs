//! The instances as pgwolf-controller renders them, run for real: the
//! `patroni.yml` of its ConfigMap (made local by
//! `pgwolf_tests::ha::rendered::localize`: etcd for the Kubernetes DCS,
//! local addresses and paths), its passwords and its issued certificates,
//! under Debian's Patroni and PostgreSQL 15, each member on a host of its
//! own. A setting Patroni or PostgreSQL refuses fails here.
//!
//! Harness calls block; they run on the test's own thread.

use pgwolf_controller::postgres::{connect, roles};
use pgwolf_controller::rollout;
use pgwolf_tests::ha::rendered::{config_map_entry, test_cluster, Rendered};
use pgwolf_tests::ha::{HaCluster, HaOptions, MemberInfo};
use pgwolf_tests::prometheus::PgExporter;
use pgwolf_tests::tools::{pg_bin, run_bounded};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRIMARY_HOST: &str = "main.db.svc";
const REPLICAS_HOST: &str = "main-replicas.db.svc";

/// psql as `user` with a libpq connection string; stdout, or stderr as Err.
fn psql(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5");
    let out = run_bounded(&mut cmd, Duration::from_secs(20));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `psql` until it answers `want` (a replica replays the primary's
/// CREATE DATABASE a moment later), bounded.
fn psql_until(conninfo: &str, password: &str, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = psql(conninfo, password, sql);
        if got.as_deref() == Ok(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{conninfo}: {sql}: {got:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A verify-full connection to `member` by a name its Service gives.
fn verified(name: &str, member: &MemberInfo, ca: &Path, user: &str, db: &str) -> String {
    format!(
        "host={name} hostaddr={} port={} user={user} dbname={db} sslmode=verify-full sslrootcert={}",
        member.host,
        member.pg_port,
        ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_instances_bootstrap_verify_take_only_tls_from_outside_and_rebuild_a_replica() {
    let (cluster, credentials) = test_cluster(serde_json::json!({ "monitoring": {} }));
    let rendered = Rendered::new(&cluster, &credentials);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, rendered.ca_pem()).unwrap();
    let ha = HaCluster::start(HaOptions {
        netns: true,
        rendered: Some(Arc::new(rendered.clone())),
        ..HaOptions::default()
    });
    let leader_name = ha.wait_ready(Duration::from_secs(60));
    let members = ha.members();
    let leader = members.iter().find(|m| m.name == leader_name).unwrap();
    let replicas: Vec<&MemberInfo> = members.iter().filter(|m| m.name != leader_name).collect();

    // The controller's own login: superuser over TLS, the certificate and
    // the primary Service's name verified against the issued CA; then
    // spec.users as a reconcile makes them.
    let target = connect::Target {
        host: PRIMARY_HOST.into(),
        hostaddr: Some(leader.host.parse().unwrap()),
        port: leader.pg_port,
        user: "postgres".into(),
        password: rendered.superuser_password.clone(),
        dbname: "postgres".into(),
        ca_pem: Some(rendered.ca_pem().to_vec()),
        ssl_mode: tokio_postgres::config::SslMode::Require,
    };
    let admin = connect::connect(&target, Duration::from_secs(10))
        .await
        .expect("the controller's verified TLS login");
    let (users, managed) = roles::managed(&cluster.spec, &credentials);
    let steps = roles::ensure(&admin, &users, &managed)
        .await
        .expect("spec.users and the admin role in PostgreSQL");
    assert!(!steps.is_empty());

    // An application: verify-full to the primary's and the replicas'
    // Service names, encrypted.
    let alice = &credentials.users["alice"].password;
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let on_primary = verified(PRIMARY_HOST, leader, &ca, "alice", "shop");
    assert_eq!(psql(&on_primary, alice, ssl).as_deref(), Ok("t"));
    let on_replica = verified(REPLICAS_HOST, replicas[0], &ca, "alice", "shop");
    psql_until(&on_replica, alice, "SELECT pg_is_in_recovery()", "t");
    // A name the certificate does not carry is refused by verify-full.
    let wrong = verified("elsewhere.db.svc", leader, &ca, "alice", "shop");
    let err = psql(&wrong, alice, "SELECT 1").unwrap_err();
    assert!(err.contains("does not match host name"), "{err}");

    // From outside the pod, no TLS, no login: pg_hba has no line for it.
    let plain = format!(
        "host={} port={} user=alice dbname=shop sslmode=disable",
        leader.host, leader.pg_port
    );
    let err = psql(&plain, alice, "SELECT 1").unwrap_err();
    assert!(err.contains("no pg_hba.conf entry"), "{err}");

    // Both replicas stream from the leader over TLS.
    let streaming_tls = "SELECT count(*) FROM pg_stat_replication r \
         JOIN pg_stat_ssl s USING (pid) WHERE s.ssl";
    let su = &rendered.superuser_password;
    let leader_su = verified(PRIMARY_HOST, leader, &ca, "postgres", "postgres");
    psql_until(&leader_su, su, streaming_tls, "2");
    // The admin role the controller made (Spilo used to) logs in.
    let as_admin = verified(PRIMARY_HOST, leader, &ca, "admin", "postgres");
    assert_eq!(
        psql(
            &as_admin,
            &credentials.admin.password,
            "SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        .as_deref(),
        Ok("t")
    );

    // spec.monitoring: the sidecar's login (pgwolf_monitor, pg_monitor
    // only) and the rendered query file, run by the real exporter against
    // the leader (over TLS: the pod's loopback is not there to use). With
    // pg_monitor, pg_stat_replication's positions are readable, so both
    // replicas' lag is a number.
    let objects = pgwolf_controller::resources::desired(&cluster, &credentials).unwrap();
    let queries = dir.path().join("queries.yaml");
    std::fs::write(
        &queries,
        config_map_entry(&objects, "main-monitoring", "queries.yaml"),
    )
    .unwrap();
    let monitor = credentials
        .monitor
        .as_ref()
        .expect("spec.monitoring's login");
    let uri = format!(
        "{}:{}/postgres?sslmode=require",
        leader.host, leader.pg_port
    );
    let exporter = PgExporter::start_with_env(
        &[
            ("DATA_SOURCE_URI", uri.as_str()),
            ("DATA_SOURCE_USER", "pgwolf_monitor"),
            ("DATA_SOURCE_PASS", monitor.password.as_str()),
        ],
        &queries,
    );
    let lag_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("pg_replica_replay_lag_bytes{"))
            .map(String::from)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = exporter.metrics();
        if lag_lines(&text).len() == 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        text.lines()
            .any(|l| l.starts_with("pg_up") && l.ends_with(" 1")),
        "the exporter's login: {text}"
    );
    let lags = lag_lines(&text);
    assert_eq!(lags.len(), 2, "{text}");
    assert!(lags.iter().all(|l| !l.ends_with("NaN")), "{lags:?}");
    assert!(
        !text.contains(&monitor.password),
        "no secret in the metrics"
    );
    drop(exporter);

    // spec.postgresql.parameters on the running cluster: the controller's
    // PATCH /config, reloaded by every member.
    let url = ha
        .rest_urls()
        .into_iter()
        .zip(&members)
        .find(|(_, m)| m.name == leader_name)
        .unwrap()
        .0;
    let mut spec = cluster.spec.clone();
    spec.postgresql
        .parameters
        .insert("work_mem".into(), "24MB".into());
    let patched = rollout::config::sync(&url, &spec, Duration::from_secs(10))
        .await
        .expect("PATCH /config");
    assert_eq!(
        patched,
        Some(serde_json::json!({ "postgresql": { "parameters": { "work_mem": "24MB" } } })),
        "only the new parameter: the rendered bootstrap seeded the rest"
    );
    for m in &members {
        let conn = verified(REPLICAS_HOST, m, &ca, "alice", "shop");
        psql_until(&conn, alice, "SHOW work_mem", "24MB");
    }

    // A replica whose volume is lost comes back from the leader
    // (pg_basebackup over TLS with the rendered fast checkpoint).
    let lost = replicas[1].name.clone();
    ha.stop_member(&lost);
    ha.remove_data(&lost);
    let started = Instant::now();
    ha.restart_member(&lost);
    ha.wait_ready(Duration::from_secs(120));
    eprintln!("[instance] {lost} rebuilt in {:?}", started.elapsed());
    let rebuilt = members.iter().find(|m| m.name == lost).unwrap();
    let conn = verified(REPLICAS_HOST, rebuilt, &ca, "alice", "shop");
    psql_until(&conn, alice, "SELECT pg_is_in_recovery()", "t");
    psql_until(&leader_su, su, streaming_tls, "2");

    // Patroni drops a setting it finds invalid with only a warning (an
    // enum parameter with an unknown value, say): none of the rendered
    // ones may have been.
    for m in &members {
        let log = ha.member_log(&m.name);
        assert!(
            !log.contains("due to the invalid value"),
            "{}: Patroni dropped a rendered setting:\n{}",
            m.name,
            log.lines()
                .filter(|l| l.contains("invalid value"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    drop(admin);
}
