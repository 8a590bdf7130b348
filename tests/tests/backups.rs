//! `spec.backups` with real pgBackRest 2.45: a three-member Patroni cluster
//! runs the controller's rendered patroni.yml and pgbackrest.conf with two
//! repositories, a volume (here a directory) and S3 (moto's server behind
//! TLS with a test CA), archives its WAL to both through the rendered
//! archive_command and takes a full backup into each. A replica whose data
//! is deleted comes back from the repository, not from a base backup of
//! the primary. Rows are written, the time noted, more rows written, the
//! table dropped; a restore of each repository to the noted time, started
//! as a server of its own, holds exactly the rows written before it, and
//! pgwolf in front of one serves them. Then the S3 endpoint stops: the
//! controller's reconcile (kube-fake-client, the real primary) reports
//! WALArchiving False, Degraded ArchiveFailing, the Event and the metric,
//! and once the endpoint is back archiving catches up.

#[path = "../../controller/tests/support/fake_api.rs"]
mod fake_api;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgwolf_controller::resources::pgbackrest;
use pgwolf_tests::certs::Ca;
use pgwolf_tests::ha::rendered::{test_cluster, Rendered};
use pgwolf_tests::ha::{
    HaCluster, HaOptions, MemberInfo, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER, HA_SUPERUSER,
};
use pgwolf_tests::tools::{child_command, pg_bin, run_bounded};
use pgwolf_tests::{connect, free_port, userlist, Pgwolf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// psql over TLS to a member; the value of a one-value query.
fn psql(m: &MemberInfo, user: &str, password: &str, db: &str, sql: &str) -> String {
    let conn = format!(
        "host={} port={} user={user} dbname={db} sslmode=require",
        m.host, m.pg_port
    );
    let out = run_bounded(
        Command::new(pg_bin("psql"))
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", &conn, "-c", sql])
            .env("PGPASSWORD", password),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A PostgreSQL started on a restored data directory; killed on drop.
struct Restored {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Restored {
    /// Starts the server in `data` with its own port, sockets and a
    /// pg_hba.conf trusting the loopback; archiving off, so the copy
    /// never pushes into the stanza it came from. `restore_command`
    /// (pgBackRest wrote it into postgresql.auto.conf) runs with `conf`.
    fn start(
        ha: &HaCluster,
        data: &std::path::Path,
        conf: &std::path::Path,
        tag: &str,
    ) -> Restored {
        let run = ha.scratch_dir(&format!("restored-run-{tag}"));
        let hba = run.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        pgwolf_tests::tools::give_to_server_user(&run);
        let port = free_port();
        let log_path = run.join("postgres.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = child_command(&pg_bin("postgres"), true)
            .arg("-D")
            .arg(data)
            .args(["-c", &format!("port={port}")])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("unix_socket_directories={}", run.display())])
            .args(["-c", &format!("hba_file={}", hba.display())])
            .args(["-c", "archive_mode=off", "-c", "ssl=off"])
            .env("PGBACKREST_CONFIG", conf)
            .env("PGBACKREST_REPO2_S3_KEY", "test-key")
            .env("PGBACKREST_REPO2_S3_KEY_SECRET", "test-secret")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the restored server");
        Restored {
            child,
            port,
            log: log_path,
        }
    }

    fn log(&self) -> String {
        pgwolf_tests::tools::tail(&pgwolf_tests::tools::read_lossy(&self.log), 40)
    }

    /// The value of a one-value query as `user`, once the server answers
    /// it (it replays WAL to the target first).
    fn query_when_up(&self, sql: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let out = run_bounded(
                Command::new(pg_bin("psql")).args([
                    "-XAtq",
                    &format!(
                        "host=127.0.0.1 port={} user={HA_SUPERUSER} dbname={HA_APP_DB}",
                        self.port
                    ),
                    "-c",
                    sql,
                ]),
                Duration::from_secs(30),
            );
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            if Instant::now() > deadline {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// moto's S3 server (PyPI `moto[server]`) behind TLS with a test CA: moto
/// serves plain HTTP on one free port and socat terminates TLS on another.
/// (moto's own `--ssl-cert` closes connections without TLS close_notify,
/// which pgBackRest's OpenSSL 3 reports as "unexpected eof" on every
/// upload: stanza-create failed after its retries, 97 s.) One bucket;
/// both killed on drop.
struct S3 {
    moto: std::process::Child,
    tls: Option<std::process::Child>,
    port: u16,
    plain: u16,
    cert_and_key: std::path::PathBuf,
    ca_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

const BUCKET: &str = "pgwolf-backups";

impl S3 {
    fn start() -> S3 {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("s3 test CA");
        let ca_path = ca.write(dir.path(), "ca");
        let pair = ca.issue(dir.path(), "s3", "localhost", &["localhost"]);
        let (port, plain) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let moto = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &plain.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moto_server (scripts/install-deps installs moto[server])");
        let both = dir.path().join("s3-cert-and-key.pem");
        let mut pem = std::fs::read(&pair.cert).unwrap();
        pem.extend(std::fs::read(&pair.key).unwrap());
        std::fs::write(&both, pem).unwrap();
        let mut s3 = S3 {
            moto,
            tls: None,
            port,
            plain,
            cert_and_key: both,
            ca_pem: std::fs::read(&ca_path).unwrap(),
            _dir: dir,
        };
        s3.start_tls();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = run_bounded(
                Command::new("curl")
                    .args(["-sf", "-X", "PUT", "--cacert"])
                    .arg(&ca_path)
                    .arg(format!("https://localhost:{port}/{BUCKET}")),
                Duration::from_secs(10),
            );
            if out.status.success() {
                return s3;
            }
            assert!(Instant::now() < deadline, "moto never answered over TLS");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl S3 {
    /// The endpoint answers again (socat in front of moto, on its port).
    fn start_tls(&mut self) {
        let tls = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={}",
                self.port,
                self.cert_and_key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{}", self.plain))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat (scripts/install-deps installs it)");
        self.tls = Some(tls);
    }

    /// The endpoint is gone: connections to it are refused.
    fn stop_tls(&mut self) {
        if let Some(mut tls) = self.tls.take() {
            let _ = tls.kill();
            let _ = tls.wait();
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop_tls();
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// The controller's view of the archive: reconciles of the cluster in
/// kube-fake-client (its leader Endpoints naming the primary) with access
/// to the real primary.
struct ArchiveWatch {
    client: kube::Client,
    settings: pgwolf_controller::reconcile::cluster::Settings,
}

impl ArchiveWatch {
    /// The cluster and its Secrets as a reconcile made them (the same
    /// passwords and CA the running members have).
    async fn new(
        cluster: &pgwolf_controller::api::PostgresCluster,
        credentials: &pgwolf_controller::secrets::Credentials,
        leader: &MemberInfo,
    ) -> ArchiveWatch {
        let mut stored = cluster.clone();
        stored.metadata.uid = Some("00000000-0000-4000-8000-0000000ba0c5".into());
        let mut objects = vec![serde_json::to_value(&stored).unwrap()];
        for child in pgwolf_controller::resources::desired(cluster, credentials).unwrap() {
            if let pgwolf_controller::resources::Child::Secret(secret) = child {
                objects.push(serde_json::to_value(&secret).unwrap());
            }
        }
        objects.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": "main", "namespace": "db",
                          "annotations": { "leader": leader.name } },
        }));
        let client = fake_api::client(objects).await;
        let settings = pgwolf_controller::reconcile::cluster::Settings {
            postgres: Some(pgwolf_controller::reconcile::cluster::PostgresAccess {
                hostaddr: Some(leader.host.parse().unwrap()),
                port: leader.pg_port,
                ..Default::default()
            }),
            ..Default::default()
        };
        ArchiveWatch { client, settings }
    }

    async fn stored(&self) -> pgwolf_controller::api::PostgresCluster {
        kube::Api::namespaced(self.client.clone(), "db")
            .get("main")
            .await
            .unwrap()
    }

    async fn condition(&self, type_: &str) -> Condition {
        let cluster = self.stored().await;
        let outcome =
            pgwolf_controller::reconcile::reconcile(&self.client, &cluster, &self.settings)
                .await
                .expect("a reconcile");
        outcome
            .status
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    /// Reconciles until WALArchiving has `status`, writing and switching
    /// WAL segments meanwhile (a switch wakes the archiver).
    async fn until(&self, status: &str, su: &dyn Fn(&str) -> String) -> Condition {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            su("SELECT pg_switch_wal() FROM (SELECT txid_current()) t");
            let c = self
                .condition(pgwolf_controller::reconcile::status::WAL_ARCHIVING)
                .await;
            if c.status == status {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "WALArchiving stayed {}: {}",
                c.status,
                c.message
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn status(&self, c: &Condition) -> pgwolf_controller::api::PostgresClusterStatus {
        pgwolf_controller::api::PostgresClusterStatus {
            conditions: vec![c.clone()],
            ..Default::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_in_time_restore_brings_back_exactly_the_rows_before_it() {
    let mut s3 = S3::start();
    let (cluster, credentials) = test_cluster(serde_json::json!({
        "backups": { "repos": [
            { "name": "repo1", "volume": {} },
            { "name": "repo2", "s3": {
                "endpoint": format!("localhost:{}", s3.port),
                "bucket": BUCKET,
                "region": "us-east-1",
                "uriStyle": "path",
                "credentialsSecret": "backup-s3",
                "caSecretName": "backup-s3-ca",
            } },
        ] },
    }));
    let mut rendered = Rendered::new(&cluster, &credentials);
    assert!(
        rendered.pgbackrest_conf.is_some(),
        "pgbackrest.conf rendered"
    );
    // What the pod gets from the two Secrets the manifest names (moto
    // takes any keys).
    rendered.files.push((
        format!("{}/repo2/ca.crt", pgbackrest::CA_MOUNT),
        s3.ca_pem.clone(),
    ));
    rendered.secret_env = vec![
        ("PGBACKREST_REPO2_S3_KEY".into(), "test-key".into()),
        (
            "PGBACKREST_REPO2_S3_KEY_SECRET".into(),
            "test-secret".into(),
        ),
        // An unreachable S3 endpoint makes archive-push retry for
        // io-timeout (60 s) before it fails; the outage below needs the
        // failure, not the wait.
        ("PGBACKREST_IO_TIMEOUT".into(), "5".into()),
    ];
    let superuser_password = rendered.superuser_password.clone();
    let ha = HaCluster::start(HaOptions {
        rendered: Some(Arc::new(rendered)),
        ..HaOptions::default()
    });
    let leader_name = ha.leader().expect("a leader");
    let leader = ha
        .members()
        .into_iter()
        .find(|m| m.name == leader_name)
        .unwrap();
    let su = |sql: &str| psql(&leader, HA_SUPERUSER, &superuser_password, "postgres", sql);
    let app = |sql: &str| psql(&leader, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB, sql);

    assert_eq!(su("SHOW archive_mode"), "on", "the rendered archive_mode");

    let pgbr = |args: &[&str]| {
        let t = Instant::now();
        let out = ha
            .pgbackrest(&leader_name, args)
            .unwrap_or_else(|e| panic!("{e}\n{}", ha.log_tails(30)));
        eprintln!("[backups] pgbackrest {args:?}: {:?}", t.elapsed());
        out
    };
    // Nobody runs stanza-create: Patroni's callback does, on the primary.
    let waiting = Instant::now();
    let stanza = waiting + Duration::from_secs(90);
    while !ha
        .pgbackrest(&leader_name, &["info"])
        .is_ok_and(|i| i.contains("status: ok") || i.contains("no valid backups"))
    {
        assert!(
            Instant::now() < stanza,
            "the callback made no stanza: {:?}\n{}",
            ha.pgbackrest(&leader_name, &["info"]),
            pgwolf_tests::tools::tail(&ha.member_log(&leader_name), 40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "[backups] the callback's stanza after {:?}",
        waiting.elapsed()
    );
    // check: a WAL switch archived by PostgreSQL's own archive_command.
    pgbr(&["check"]);
    pgbr(&["--repo=1", "backup", "--type=full"]);
    pgbr(&["--repo=2", "backup", "--type=full"]);
    let info = pgbr(&["info"]);
    assert_eq!(info.matches("full backup").count(), 2, "{info}");
    // pgBackRest picks the backup for a time target by its stop time in
    // whole seconds: a target in the second the backup ended finds none.
    std::thread::sleep(Duration::from_millis(1100));

    // A replica whose volume is lost comes back from the repository
    // (create_replica_methods: pgbackrest first), not from a base backup
    // of the primary.
    let replica = ha
        .members()
        .into_iter()
        .map(|m| m.name)
        .find(|n| *n != leader_name)
        .unwrap();
    let rebuilt = Instant::now();
    let before = ha.member_log(&replica).len();
    ha.stop_member(&replica);
    ha.remove_data(&replica);
    ha.restart_member(&replica);
    ha.wait_ready(Duration::from_secs(120));
    // At the cluster's start, with no backup yet, the replicas fell back
    // to a base backup; only this time counts.
    let log = ha.member_log(&replica)[before..].to_string();
    assert!(
        log.contains("replica has been created using pgbackrest"),
        "{replica} not restored from the repository:\n{}",
        pgwolf_tests::tools::tail(&log, 40)
    );
    assert!(!log.contains("created using basebackup"), "{log}");
    eprintln!(
        "[backups] {replica} rebuilt from the repository in {:?}",
        rebuilt.elapsed()
    );

    app("CREATE TABLE kept (v int)");
    app("INSERT INTO kept SELECT generate_series(1, 100)");
    let target = su("SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    app("INSERT INTO kept SELECT generate_series(101, 150)");
    app("DROP TABLE kept");
    // Everything up to now archived (check switches WAL and waits).
    pgbr(&["check"]);
    // Segments finished before stanza-create failed to archive (and were
    // retried); since then every one went through.
    let archived = su(
        "SELECT archived_count > 0 AND \
         (last_failed_time IS NULL OR last_archived_time > last_failed_time) FROM pg_stat_archiver",
    );
    assert_eq!(archived, "t", "archiving healthy");

    // The same point in time from each repository.
    let mut servers = Vec::new();
    for repo in ["1", "2"] {
        let data = ha.scratch_dir(&format!("restored-repo{repo}"));
        let started = Instant::now();
        pgbr(&[
            &format!("--repo={repo}"),
            "restore",
            &format!("--pg1-path={}", data.display()),
            "--type=time",
            &format!("--target={target}"),
            "--target-action=promote",
        ]);
        let restored = Restored::start(&ha, &data, &ha.pgbackrest_conf(&leader_name), repo);
        // Replayed to the target and promoted (recovery_target_action),
        // then counted: a hot standby would answer while it still replays.
        let promoted = Instant::now() + Duration::from_secs(60);
        while restored.query_when_up("SELECT pg_is_in_recovery()", Duration::from_secs(60))
            != Ok("f".into())
        {
            assert!(
                Instant::now() < promoted,
                "the server restored from repo{repo} never left recovery:\n{}",
                restored.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let count = restored
            .query_when_up("SELECT count(*) FROM kept", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("restored from repo{repo}: {e}\n{}", restored.log()));
        eprintln!(
            "[backups] repo{repo} restored to {target} in {:?}: {count} rows",
            started.elapsed()
        );
        assert_eq!(
            count, "100",
            "repo{repo}: exactly the rows before the target"
        );
        servers.push(restored);
    }
    let restored = &servers[1];

    // The S3 endpoint stops: archive_command fails, and a reconcile (the
    // controller's, against kube-fake-client, reading the real primary)
    // reports it as WALArchiving False, Degraded ArchiveFailing, an Event
    // and the metric; once the endpoint is back, archiving catches up.
    let watch = ArchiveWatch::new(&cluster, &credentials, &leader).await;
    let healthy = watch.until("True", &su).await;
    s3.stop_tls();
    let failing = watch.until("False", &su).await;
    assert!(failing.message.contains("fails for"), "{}", failing.message);
    let degraded = watch
        .condition(pgwolf_controller::reconcile::status::DEGRADED)
        .await;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ArchiveFailing")
    );
    let event = pgwolf_controller::run::archive_event(
        Some(&watch.status(&healthy)),
        &watch.status(&failing),
    )
    .expect("an Event");
    assert_eq!(event.reason, "ArchiveFailing");
    let metrics = pgwolf_controller::run::metrics::Metrics::new();
    let text = metrics.render([&watch.stored().await]);
    assert!(
        text.contains("pgwolf_controller_clusters{condition=\"WALArchiving\",status=\"False\"} 1"),
        "{text}"
    );
    let failed_wal = failing.message.clone();
    s3.start_tls();
    let recovered = watch.until("True", &su).await;
    eprintln!("[backups] archive: {} -> {}", failed_wal, recovered.message);
    // Nothing lost: every segment since is in both repositories.
    pgbr(&["check"]);

    // pgwolf in front of the restored server serves them.
    let toml = format!(
        "pool_mode = \"transaction\"\n\n[databases.{HA_APP_DB}]\nhost = \"127.0.0.1\"\n\
         port = {}\npool_size = 2\n",
        restored.port
    );
    let proxy = Pgwolf::start(&toml, &userlist(&[(HA_APP_USER, HA_APP_PASSWORD)]));
    let client = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
    let row = client
        .query_one("SELECT count(*), max(v) FROM kept", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (100, 100));
}
