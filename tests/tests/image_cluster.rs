//! The project's images run for real (`scripts/image-cluster`, which CI runs
//! after the tests; it builds the images first): etcd, three members
//! of the instance image and the pgwolf image, as containers on a Docker
//! network of their own. Each member runs the controller's rendered
//! patroni.yml, made local by `localize` (etcd instead of the Kubernetes
//! DCS, which needs an API server that these machines do not have), with
//! the Secrets' files mounted where the pods mount them; pgwolf runs the
//! controller's rendered pgwolf.toml, with the patroni provider instead of
//! the kubernetes one. Then the switchover probe: 20 clients writing
//! through pgwolf over verified TLS while pgwolf switches the primary
//! over, and not one error.

use pgwolf_controller::postgres::{connect, roles};
use pgwolf_controller::resources;
use pgwolf_tests::ha::rendered::{
    config_map_entry, localize, secret_entry, test_cluster, Rendered, Site,
};
use pgwolf_tests::tools::run_bounded;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MEMBERS: [&str; 3] = ["pg1", "pg2", "pg3"];
/// The instance image's postgres group: the mounted key is root's and
/// this group's, mode 0640, as a Secret volume with fsGroup makes it.
const POSTGRES_GID: u32 = 103;
const POOLER_UID: u32 = 65532;

fn tag() -> String {
    std::env::var("PGWOLF_IMAGE_TAG").unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_string())
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = run_bounded(Command::new("docker").args(args), Duration::from_secs(120));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Containers and the network, removed on drop (also when the test fails).
struct Lab {
    prefix: String,
    containers: Mutex<Vec<String>>,
}

impl Lab {
    fn new() -> Lab {
        let prefix = format!("pgwolf-ic-{}", std::process::id());
        // A /24 of 10.215.x.0 per process: Docker refuses overlapping ones.
        let subnet = format!("10.215.{}.0/24", std::process::id() % 250);
        docker(&["network", "create", "--subnet", &subnet, &prefix]).expect("docker network");
        Lab {
            prefix,
            containers: Mutex::new(Vec::new()),
        }
    }

    fn ip(&self, last: u8) -> String {
        format!("10.215.{}.{last}", std::process::id() % 250)
    }

    /// `docker run -d` in the network namespace of the lab's container
    /// `beside`, as a pod's sidecar shares its pod's.
    fn sidecar(&self, name: &str, beside: &str, args: &[&str]) {
        let full = format!("{}-{name}", self.prefix);
        let network = format!("container:{}-{beside}", self.prefix);
        let mut all = vec!["run", "-d", "--name", &full, "--network", &network];
        all.extend_from_slice(args);
        docker(&all).unwrap_or_else(|e| panic!("{e}"));
        self.containers.lock().unwrap().push(full);
    }

    /// `docker run -d` on the lab's network at `ip`.
    fn run(&self, name: &str, ip: &str, args: &[&str]) {
        let full = format!("{}-{name}", self.prefix);
        let mut all = vec![
            "run",
            "-d",
            "--name",
            &full,
            "--hostname",
            name,
            "--network",
            &self.prefix,
            "--ip",
            ip,
        ];
        all.extend_from_slice(args);
        docker(&all).unwrap_or_else(|e| panic!("{e}"));
        self.containers.lock().unwrap().push(full);
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for c in self.containers.lock().unwrap().iter() {
            let logs = run_bounded(
                Command::new("docker").args(["logs", "--tail", "25", c]),
                Duration::from_secs(20),
            );
            out.push_str(&format!(
                "--- {c}\n{}{}\n",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            ));
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.containers.lock().unwrap().iter() {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        let _ = docker(&["network", "rm", &self.prefix]);
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// Runs the rendered StatefulSet's `exporter` container beside `member`:
/// its command, arguments and environment (the Secret reference resolved
/// to the rendered Secret's bytes, as the kubelet would), its ConfigMap
/// volume as a read-only directory at its mount path.
fn exporter_sidecar(lab: &Lab, objects: &[resources::Child], dir: &Path, member: &str, tag: &str) {
    let pod = objects
        .iter()
        .find_map(|o| match o {
            resources::Child::StatefulSet(s) => s.spec.as_ref()?.template.spec.clone(),
            _ => None,
        })
        .expect("the rendered pod template");
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == "exporter")
        .expect("the rendered exporter container");
    let mount = &container.volume_mounts.as_ref().unwrap()[0];
    let config_map = pod
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .expect("the exporter's ConfigMap volume");
    let queries = dir.join(format!("monitoring-{member}"));
    let text = config_map_entry(objects, &config_map, "queries.yaml");
    write(&queries.join("queries.yaml"), text.as_bytes(), 0o644, None);
    let mut args: Vec<String> = Vec::new();
    for e in container.env.as_deref().unwrap_or_default() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let key = from.secret_key_ref.as_ref().expect("a Secret reference");
                String::from_utf8(secret_entry(objects, &key.name, &key.key)).unwrap()
            }
            _ => panic!("env {} has no value", e.name),
        };
        args.push("-e".into());
        args.push(format!("{}={value}", e.name));
    }
    args.push("-v".into());
    args.push(format!("{}:{}:ro", queries.display(), mount.mount_path));
    let command = container.command.as_ref().unwrap();
    args.push("--entrypoint".into());
    args.push(command[0].clone());
    args.push(format!("pgwolf-instance:{tag}"));
    args.extend(container.args.clone().unwrap_or_default());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.sidecar(&format!("{member}-exporter"), member, &args);
}

fn get_text(url: &str) -> Option<String> {
    let out = run_bounded(
        Command::new("curl").args(["-sf", "--max-time", "5", url]),
        Duration::from_secs(10),
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn get_json(url: &str) -> Option<serde_json::Value> {
    let addr = url.trim_start_matches("http://");
    pgwolf_tests::ha::http::get_at(addr.parse().ok()?, "/cluster", Duration::from_secs(3))
        .ok()?
        .json()
}

/// One leader and two replicas streaming (or running, as Patroni 3.0
/// reports streaming replicas), by the first member that answers.
fn wait_for_cluster(lab: &Lab, urls: &[String], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let view = urls.iter().find_map(|u| get_json(u));
        if let Some(v) = &view {
            let members = v["members"].as_array().cloned().unwrap_or_default();
            let leader = members
                .iter()
                .find(|m| m["role"] == "leader" && m["state"] == "running");
            let replicas = members
                .iter()
                .filter(|m| {
                    m["role"] != "leader" && (m["state"] == "running" || m["state"] == "streaming")
                })
                .count();
            if let (Some(l), 2) = (leader, replicas) {
                return l["name"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the container cluster is not ready within {limit:?}: {view:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[derive(Default)]
struct Log {
    acked: AtomicU64,
    errors: Mutex<Vec<String>>,
}

async fn writer(target: connect::Target, log: Arc<Log>, stop: Arc<AtomicBool>) {
    let mut client = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match connect::connect(&target, Duration::from_secs(10)).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    log.errors.lock().unwrap().push(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().unwrap();
        n += 1;
        let sql = format!("BEGIN; INSERT INTO acks (v) VALUES ({n}); COMMIT");
        match c.batch_execute(&sql).await {
            Ok(()) => {
                log.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                log.errors.lock().unwrap().push(e.to_string());
                if c.is_closed() {
                    client = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the images of scripts/build-images: scripts/image-cluster"]
async fn three_instance_containers_and_pgwolf_switch_over_with_no_client_error() {
    let tag = tag();
    let (cluster, credentials) = test_cluster(serde_json::json!({
        "pooler": { "mode": "transaction", "defaultPoolSize": 10 },
        "monitoring": {},
    }));
    let rendered = Rendered::new(&cluster, &credentials);
    let objects = resources::desired(&cluster, &credentials).expect("render");
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new();
    let etcd_ip = lab.ip(10);
    let member_ip = |i: usize| lab.ip(11 + i as u8);
    let pooler_ip = lab.ip(20);

    lab.run(
        "etcd",
        &etcd_ip,
        &[
            &format!("pgwolf-etcd:{tag}"),
            "--name=e1",
            "--data-dir=/tmp/etcd",
            "--listen-client-urls=http://0.0.0.0:2379",
            &format!("--advertise-client-urls=http://{etcd_ip}:2379"),
            "--listen-peer-urls=http://0.0.0.0:2380",
            &format!("--initial-advertise-peer-urls=http://{etcd_ip}:2380"),
            &format!("--initial-cluster=e1=http://{etcd_ip}:2380"),
            "--logger=zap",
        ],
    );

    // The Secrets' files where the pod mounts them: /tls, /tlsca.
    for (pod_path, bytes) in &rendered.files {
        let mode = if pod_path.ends_with(".key") {
            0o640
        } else {
            0o644
        };
        let host = dir.path().join(pod_path.trim_start_matches('/'));
        write(&host, bytes, mode, Some((0, POSTGRES_GID)));
    }
    let superuser_env = format!("PATRONI_SUPERUSER_PASSWORD={}", rendered.superuser_password);
    let replication_env = format!(
        "PATRONI_REPLICATION_PASSWORD={}",
        rendered.replication_password
    );
    for (i, name) in MEMBERS.iter().enumerate() {
        let ip = member_ip(i);
        let yml = localize(
            &rendered.patroni_yml,
            &Site {
                name,
                etcd: &[format!("{etcd_ip}:2379")],
                host: &ip,
                pg_port: 5432,
                rest_port: 8008,
                // A container of its own listens as the pod does.
                listen_on_host: false,
                paths: &[],
            },
        );
        let conf = dir.path().join(format!("{name}.yml"));
        write(&conf, yml.as_bytes(), 0o644, None);
        lab.run(
            name,
            &ip,
            &[
                "-e",
                &superuser_env,
                "-e",
                &replication_env,
                "-v",
                &format!("{}:/etc/patroni/patroni.yml:ro", conf.display()),
                "-v",
                &format!("{}:/tls:ro", dir.path().join("tls").display()),
                "-v",
                &format!("{}:/tlsca:ro", dir.path().join("tlsca").display()),
                "--shm-size=256m",
                &format!("pgwolf-instance:{tag}"),
            ],
        );
    }
    let rest_urls: Vec<String> = (0..3)
        .map(|i| format!("http://{}:8008", member_ip(i)))
        .collect();
    let leader = wait_for_cluster(&lab, &rest_urls, Duration::from_secs(180));
    let leader_ip = member_ip(MEMBERS.iter().position(|m| *m == leader).unwrap());

    // The preStop hook: a primary's pod is held (here for its 3 s bound),
    // a replica's goes at once.
    let prestop = |member: &str| {
        let started = Instant::now();
        let container = format!("{}-{member}", lab.prefix);
        docker(&["exec", &container, "/usr/local/bin/instance-prestop", "3"])
            .unwrap_or_else(|e| panic!("{e}"));
        started.elapsed()
    };
    let replica = MEMBERS.iter().find(|m| **m != leader).unwrap();
    let (held, let_go) = (prestop(&leader), prestop(replica));
    assert!(
        held >= Duration::from_secs(3),
        "the primary's pod held {held:?}"
    );
    assert!(
        let_go < Duration::from_secs(2),
        "a replica's pod held {let_go:?}"
    );

    // spec.users as the controller's reconcile makes them, over verified TLS.
    let target =
        |host: &str, ip: &str, port: u16, user: &str, password: &str, db: &str| connect::Target {
            host: host.into(),
            hostaddr: Some(ip.parse().unwrap()),
            port,
            user: user.into(),
            password: password.into(),
            dbname: db.into(),
            ca_pem: Some(rendered.ca_pem().to_vec()),
            ssl_mode: tokio_postgres::config::SslMode::Require,
        };
    let su = target(
        "main.db.svc",
        &leader_ip,
        5432,
        "postgres",
        &rendered.superuser_password,
        "postgres",
    );
    let admin = connect::connect(&su, Duration::from_secs(10))
        .await
        .expect("superuser login to the leader container");
    // The roles the controller keeps: spec.users, its admin role and the
    // exporter's pgwolf_monitor.
    let (users, all_credentials) = roles::managed(&cluster.spec, &credentials);
    roles::ensure(&admin, &users, &all_credentials)
        .await
        .expect("spec.users");

    // spec.monitoring's exporter sidecar beside every member, as the
    // StatefulSet renders it, logged in as pgwolf_monitor (made above).
    for name in MEMBERS {
        exporter_sidecar(&lab, &objects, dir.path(), name, &tag);
    }
    let leader_metrics = format!("http://{leader_ip}:9187/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = get_text(&leader_metrics).unwrap_or_default();
        let lagging = text
            .lines()
            .filter(|l| l.starts_with("pg_replica_replay_lag_bytes{"))
            .count();
        if lagging == 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        text.lines().any(|l| l == "pg_up 1"),
        "the leader's exporter logs in: {text}\n{}",
        lab.logs()
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("pg_replica_replay_lag_bytes{"))
            .count(),
        2,
        "both replicas' lag: {text}"
    );
    let monitor = credentials.monitor.as_ref().expect("the monitor login");
    assert!(!text.contains(&monitor.password), "no secret in /metrics");
    for i in 0..3 {
        let url = format!("http://{}:9187/metrics", member_ip(i));
        let replica = get_text(&url).unwrap_or_default();
        assert!(replica.lines().any(|l| l == "pg_up 1"), "{url}: {replica}");
    }

    // pgwolf with the controller's pgwolf.toml, its auth file and TLS.
    let toml_text = config_map_entry(&objects, "main-pooler", "pgwolf.toml");
    let mut config: toml::Table = toml_text.parse().expect("the rendered pgwolf.toml");
    let mut cluster_entry = toml::Table::new();
    cluster_entry.insert("provider".into(), "patroni".into());
    cluster_entry.insert(
        "patroni_urls".into(),
        toml::Value::Array(rest_urls.iter().map(|u| u.as_str().into()).collect()),
    );
    config["clusters"]
        .as_table_mut()
        .expect("[clusters]")
        .insert("main".into(), toml::Value::Table(cluster_entry));
    let pooler_dir = dir.path().join("pooler");
    let readable = Some((POOLER_UID, POOLER_UID));
    write(
        &pooler_dir.join("pgwolf.toml"),
        config.to_string().as_bytes(),
        0o644,
        None,
    );
    let auth = secret_entry(&objects, "main-pooler-credentials", "userlist.txt");
    write(
        &pooler_dir.join("auth/userlist.txt"),
        &auth,
        0o600,
        readable,
    );
    write(
        &pooler_dir.join("server-ca/ca.crt"),
        rendered.ca_pem(),
        0o644,
        None,
    );
    let cert = secret_entry(&objects, "main-tls", "tls.crt");
    let key = secret_entry(&objects, "main-tls", "tls.key");
    write(&pooler_dir.join("tls/tls.crt"), &cert, 0o644, None);
    write(&pooler_dir.join("tls/tls.key"), &key, 0o600, readable);
    lab.run(
        "pooler",
        &pooler_ip,
        &[
            "-v",
            &format!("{}:/etc/pgwolf:ro", pooler_dir.display()),
            &format!("pgwolf:{tag}"),
        ],
    );

    let alice_pw = credentials.users["alice"].password.clone();
    let app = target(
        "main-pooler.db.svc",
        &pooler_ip,
        6432,
        "alice",
        &alice_pw,
        "shop",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let setup = loop {
        match connect::connect(&app, Duration::from_secs(5)).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                panic!("no login through pgwolf: {e}\n{}", lab.logs())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    setup
        .batch_execute("CREATE TABLE acks (id bigserial PRIMARY KEY, v bigint NOT NULL)")
        .await
        .expect("a table through pgwolf");

    let (log, stop) = (Arc::new(Log::default()), Arc::new(AtomicBool::new(false)));
    let writers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(writer(app.clone(), log.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = log.acked.load(Ordering::Relaxed);
    assert!(
        before > 0,
        "no writes: {:?}\n{}",
        log.errors.lock().unwrap(),
        lab.logs()
    );

    let console = target(
        "main-pooler.db.svc",
        &pooler_ip,
        6432,
        "pgwolf",
        &credentials.pooler.password,
        "pgwolf",
    );
    let console = connect::connect(&console, Duration::from_secs(10))
        .await
        .expect("pgwolf's admin console over TLS");
    let started = Instant::now();
    let new = tokio::time::timeout(
        Duration::from_secs(90),
        pgwolf_tests::clients::simple_value(&console, "SWITCHOVER main"),
    )
    .await
    .expect("SWITCHOVER within 90 s")
    .unwrap_or_else(|e| panic!("SWITCHOVER: {e}\n{}", lab.logs()))
    .expect("the new primary's name");
    let took = started.elapsed();
    assert_ne!(new, leader);
    let at_switch = log.acked.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("writers stop")
            .unwrap();
    }
    let acked = log.acked.load(Ordering::Relaxed);
    let errors = log.errors.lock().unwrap().clone();
    eprintln!(
        "[image-cluster] switchover {leader} -> {new} in {took:?}; {acked} transactions by 20 clients ({} after it), {} errors",
        acked - at_switch,
        errors.len()
    );
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    assert!(acked > at_switch, "no write after the switchover");
    let count: i64 = setup
        .query_one("SELECT count(*) FROM acks", &[])
        .await
        .expect("count through pgwolf")
        .get(0);
    assert_eq!(count as u64, acked, "every acknowledged write is there");
    drop(admin);
}
