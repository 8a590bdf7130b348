//! deploy/monitoring/ against the real thing: Debian's Prometheus scrapes
//! pgwolf and a postgres_exporter (with pgwolf's query file) per member of
//! a three-member Patroni cluster while clients write through pgwolf, and
//! evaluates the alert rules. Every metric each rule reads has series,
//! every rule evaluates without error, nothing but info alerts fires on
//! the healthy cluster, a switchover through pgwolf fires
//! PgwolfPrimaryChanged and counts itself, and every Grafana panel's query
//! returns series afterwards. `promtool` checks the rules and runs their
//! unit tests. The controller's rules read its /metrics, served by its own
//! HTTP code after a real reconcile against kube-fake-client.

#[path = "../../controller/tests/support/fake_api.rs"]
mod fake_api;

use pgwolf_tests::certs::Ca;
use pgwolf_tests::clients::simple_value;
use pgwolf_tests::ha::{
    HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER, HA_SUPERUSER, HA_SUPERUSER_PASSWORD,
};
use pgwolf_tests::prometheus::{metric_names, Job, PgExporter, Prometheus};
use pgwolf_tests::proxy::Pgwolf;
use pgwolf_tests::time::eventually;
use pgwolf_tests::tools::{output_text, run_bounded, workspace_dir};
use pgwolf_tests::{connect, free_port, userlist, within, HaCluster, HaOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn monitoring_dir() -> PathBuf {
    workspace_dir().join("deploy/monitoring")
}

/// (alert name, expression) of every rule in the rules file.
fn rules() -> Vec<(String, String)> {
    let path = monitoring_dir().join("prometheus/pgwolf-rules.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in doc["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_string();
            out.push((name, rule["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// (dashboard file, panel title, expression) of every panel query in
/// deploy/monitoring/grafana, with the dashboards' variables as an
/// "All" selection sets them.
fn panel_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let dir = monitoring_dir().join("grafana");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap().replace("$cluster", ".*");
                out.push((name.clone(), panel["title"].as_str().unwrap().into(), expr));
            }
        }
    }
    out
}

/// scripts/check-dashboards: every dashboard against Grafana's dashboard
/// model (the foundation SDK from PyPI) and what Grafana needs beyond it;
/// and it is no rubber stamp: a copy with a mistyped grid position, a key
/// Grafana does not have and an undefined variable fails with each named.
#[test]
fn dashboards_validate_against_grafana_s_model() {
    let script = workspace_dir().join("scripts/check-dashboards");
    let out = run_bounded(
        std::process::Command::new("python3").arg(&script),
        Duration::from_secs(120),
    );
    let text = output_text(&out);
    assert!(out.status.success(), "check-dashboards:\n{text}");
    assert!(text.contains("no problems"), "{text}");

    let broken = tempfile::tempdir().unwrap();
    let file = monitoring_dir().join("grafana/pgwolf-pooler.json");
    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    d["refreshRate"] = "5s".into();
    d["panels"][0]["gridPos"] = "x".into();
    d["panels"][1]["targets"][0]["expr"] = "sum(pgwolf_pool_size{user=\"$who\"})".into();
    let copy = broken.path().join("broken.json");
    std::fs::write(&copy, serde_json::to_string(&d).unwrap()).unwrap();
    let out = run_bounded(
        std::process::Command::new("python3")
            .arg(&script)
            .arg(&copy),
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for problem in ["refreshRate", "gridPos", "$who"] {
        assert!(text.contains(problem), "{problem} not reported:\n{text}");
    }
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let dir = monitoring_dir().join("prometheus");
    for args in [
        vec!["check", "rules", "pgwolf-rules.yml"],
        vec!["test", "rules", "pgwolf-rules-test.yml"],
    ] {
        let out = run_bounded(
            std::process::Command::new("promtool")
                .args(&args)
                .current_dir(&dir),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `spec.monitoring.scrapeConfig`'s rendered jobs, their relabeling run
/// by a real Prometheus. Debian builds Prometheus without Kubernetes
/// discovery, so each job's `kubernetes_sd_configs` is swapped for static
/// targets carrying the `__meta_kubernetes_*` labels that discovery would
/// give three pods: this cluster's instance or pooler on the right port,
/// the same pod on another port, and another cluster's pod. Only the
/// first is kept, with `cluster`, `namespace` and `pod` labels.
#[test]
fn the_rendered_scrape_config_keeps_only_this_cluster_s_pods() {
    let (cluster, credentials) = pgwolf_tests::ha::rendered::test_cluster(serde_json::json!({
        "monitoring": { "scrapeConfig": true },
        "pooler": {},
    }));
    let objects = pgwolf_controller::resources::desired(&cluster, &credentials).unwrap();
    let text = pgwolf_tests::ha::rendered::config_map_entry(
        &objects,
        "main-scrape-config",
        pgwolf_controller::resources::SCRAPE_CONFIG_KEY,
    );
    let mut jobs: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let pod = |name: &str, cluster: &str, port: &str, labels: &[(&str, &str)]| {
        let mut l = serde_json::json!({
            "__meta_kubernetes_namespace": "db",
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_container_port_name": port,
            "__meta_kubernetes_pod_label_cluster_name": cluster,
            "__meta_kubernetes_pod_label_app_kubernetes_io_instance": cluster,
        });
        for (k, v) in labels {
            l[format!("__meta_kubernetes_pod_label_{k}")] = serde_json::json!(v);
        }
        serde_json::json!({ "targets": [format!("{name}.invalid:9")], "labels": l })
    };
    let mut expected = Vec::new();
    for job in jobs.as_array_mut().unwrap() {
        let name = job["job_name"].as_str().unwrap().to_string();
        let (port, labels): (&str, Vec<(&str, &str)>) = if name.ends_with("/postgres") {
            ("exporter", vec![("application", "spilo")])
        } else {
            ("http", vec![("app_kubernetes_io_component", "pooler")])
        };
        let kind = name.rsplit('/').next().unwrap().to_string();
        let ours = format!("main-{kind}-0");
        job.as_object_mut().unwrap().remove("kubernetes_sd_configs");
        job["static_configs"] = serde_json::json!([
            pod(&ours, "main", port, &labels),
            pod(&format!("main-{kind}-1"), "main", "other", &labels),
            pod(&format!("other-{kind}-0"), "other", port, &labels),
        ]);
        expected.push((name, ours));
    }
    assert_eq!(expected.len(), 2, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("none.yml");
    std::fs::write(&rules, "groups: []\n").unwrap();
    let prometheus = Prometheus::start_with_scrape_configs(&jobs, &[rules]);
    // Discovery hands targets over within a few seconds of the start.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let targets = loop {
        let t = prometheus.api("/api/v1/targets");
        let seen = |k: &str| t["data"][k].as_array().map_or(0, Vec::len);
        if seen("activeTargets") + seen("droppedTargets") >= 6
            || std::time::Instant::now() > deadline
        {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    let kept: Vec<(String, String, String, String)> = active
        .iter()
        .map(|t| {
            let l = &t["labels"];
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("job"), s("pod"), s("cluster"), s("namespace"))
        })
        .collect();
    let mut want: Vec<(String, String, String, String)> = expected
        .into_iter()
        .map(|(job, pod)| (job, pod, "main".into(), "db".into()))
        .collect();
    want.sort();
    let mut kept = kept;
    kept.sort();
    assert_eq!(kept, want, "{targets}");
    assert_eq!(
        targets["data"]["droppedTargets"].as_array().unwrap().len(),
        4
    );
}

/// pgwolf-controller's /metrics on a free port: its HTTP server and
/// metrics, after one reconcile of a cluster stored in kube-fake-client
/// (no pods there, so the rollout waits) and with that cluster, status
/// included, in the cache the cluster counts come from.
async fn controller_metrics() -> u16 {
    use kube::runtime::{reflector, watcher};
    use pgwolf_controller::api::PostgresCluster;
    use pgwolf_controller::run::{http, metrics::Metrics, record};
    let (mut cluster, _) = pgwolf_tests::ha::rendered::test_cluster(serde_json::json!({}));
    cluster.metadata.uid = Some("00000000-0000-4000-8000-00000000beef".into());
    let client = fake_api::client(vec![serde_json::to_value(&cluster).unwrap()]).await;
    let started = std::time::Instant::now();
    let result =
        pgwolf_controller::reconcile::reconcile(&client, &cluster, &Default::default()).await;
    assert!(result.is_ok(), "reconcile: {result:?}");
    let metrics = Metrics::new();
    record(&metrics, &result, started.elapsed());
    let stored: PostgresCluster = kube::Api::namespaced(client, "db")
        .get("main")
        .await
        .unwrap();
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Apply(stored));
    let state = Arc::new(http::State {
        metrics,
        clusters: store,
        lease_ok: true.into(),
    });
    state.metrics.leading.set(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(http::serve(state, listener));
    port
}

/// Clients writing through pgwolf until `stop`: WAL to replicate, pools
/// to fill. Errors (a switchover's) are retried.
async fn load(port: u16, stop: Arc<AtomicBool>) {
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = pgwolf_tests::try_connect(port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB)
                .await
                .ok();
        }
        let Some(c) = &client else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let wrote = c
            .batch_execute("INSERT INTO probe (node) VALUES ('monitoring'); SELECT pg_sleep(0.01)")
            .await;
        if wrote.is_err() && c.is_closed() {
            client = None;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_answer_from_a_real_prometheus_and_a_switchover_fires() {
    let ha = HaCluster::start(HaOptions::default());
    ha.wait_ready(Duration::from_secs(60));
    // Client TLS, so the certificate's expiry is a series too.
    let certs = tempfile::tempdir().unwrap();
    let pair = Ca::new("monitoring CA").issue(certs.path(), "pgwolf", "pgwolf", &["127.0.0.1"]);
    let http = free_port();
    let urls: Vec<String> = ha.rest_urls().iter().map(|u| format!("{u:?}")).collect();
    let toml = format!(
        "pool_mode = \"transaction\"\nadmin_users = [\"{HA_APP_USER}\"]\n\
         http_listen = \"127.0.0.1:{http}\"\nclient_tls_sslmode = \"allow\"\n\
         client_tls_cert_file = {:?}\nclient_tls_key_file = {:?}\n\n\
         [clusters.ha]\nprovider = \"patroni\"\npatroni_urls = [{}]\n\n\
         [databases.{HA_APP_DB}]\ncluster = \"ha\"\npool_size = 4\n",
        pair.cert.display().to_string(),
        pair.key.display().to_string(),
        urls.join(", ")
    );
    let proxy = Pgwolf::start(&toml, &userlist(&[(HA_APP_USER, HA_APP_PASSWORD)]));
    let queries = monitoring_dir().join("postgres-exporter/queries.yaml");
    let exporters: Vec<PgExporter> = ha
        .pg_addrs()
        .iter()
        .map(|(host, port)| {
            let dsn = format!(
                "postgresql://{HA_SUPERUSER}:{HA_SUPERUSER_PASSWORD}@{host}:{port}/postgres?sslmode=disable"
            );
            PgExporter::start(&dsn, &queries)
        })
        .collect();
    let controller = controller_metrics().await;
    let scraping_since = std::time::Instant::now();
    let prometheus = Prometheus::start(
        &[
            Job {
                name: "pgwolf".into(),
                targets: vec![format!("127.0.0.1:{http}")],
            },
            Job {
                name: "pgwolf-controller".into(),
                targets: vec![format!("127.0.0.1:{controller}")],
            },
            Job {
                name: "postgres".into(),
                targets: exporters.iter().map(PgExporter::target).collect(),
            },
        ],
        &[monitoring_dir().join("prometheus/pgwolf-rules.yml")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|_| tokio::spawn(load(proxy.port(), stop.clone())))
        .collect();

    // Scraped: pgwolf's pool, every member, both replicas seen from the
    // primary.
    let scraped = eventually(Duration::from_secs(60), || async {
        let up = prometheus.query("count(pg_up == 1)");
        let replicas = prometheus.query("count(pg_replica_replay_lag_bytes)");
        let pool = prometheus.query("count(pgwolf_transactions_total > 0)");
        let controller = prometheus.query("pgwolf_controller_leading == 1");
        let n = |r: &[serde_json::Value]| r.first().map(|s| s["value"][1].clone());
        (n(&up) == Some("3".into())
            && n(&replicas) == Some("2".into())
            && !pool.is_empty()
            && !controller.is_empty())
        .then_some(())
    })
    .await;
    assert!(
        scraped.is_some(),
        "Prometheus never saw the cluster, the pool and the controller"
    );

    // Every metric a rule reads exists in the real scrape.
    let mut missing = Vec::new();
    for (alert, expr) in rules() {
        for name in metric_names(&expr) {
            if prometheus.query(&format!("count({name})")).is_empty() {
                missing.push(format!("{alert}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics no target exports: {missing:#?}\ntargets: {}",
        prometheus.api("/api/v1/targets")
    );
    // Every rule evaluated, without error.
    let evaluated = eventually(Duration::from_secs(30), || async {
        let v = prometheus.api("/api/v1/rules");
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        rules
            .iter()
            .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z")
            .then_some(rules)
    })
    .await;
    let evaluated = evaluated
        .unwrap_or_else(|| panic!("rules not all healthy: {}", prometheus.api("/api/v1/rules")));
    assert_eq!(evaluated.len(), rules().len());
    let firing = prometheus.query("ALERTS{alertstate=\"firing\",severity!=\"info\"}");
    assert!(
        firing.is_empty(),
        "alerts on a healthy cluster: {firing:#?}"
    );

    // Drawing the dashboards for the docs: minutes of load around the
    // switchover, so the graphs show a trend rather than a few scrapes.
    let kept = std::env::var_os("PGWOLF_DASHBOARD_PNGS").map(PathBuf::from);
    let linger = Duration::from_secs(if kept.is_some() { 90 } else { 0 });
    tokio::time::sleep(linger).await;

    // A switchover through pgwolf: counted, and the primary-changed alert
    // fires; the new primary's timeline is one more.
    let timeline = |p: &Prometheus| -> f64 {
        let r = p.query("max(pg_timeline_id)");
        r[0]["value"][1].as_str().unwrap().parse().unwrap()
    };
    let before = timeline(&prometheus);
    let old = ha.leader().expect("a leader");
    let admin = connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, "pgwolf").await;
    let new = within(90, "SWITCHOVER", simple_value(&admin, "SWITCHOVER ha"))
        .await
        .expect("SWITCHOVER")
        .expect("the new primary");
    assert_ne!(new, old);
    let fired = eventually(Duration::from_secs(60), || async {
        let alert = prometheus.query(
            "ALERTS{alertname=\"PgwolfPrimaryChanged\",alertstate=\"firing\",cluster=\"ha\"}",
        );
        let counted =
            prometheus.query("pgwolf_switchovers_total{cluster=\"ha\",outcome=\"done\"} == 1");
        let changed = prometheus
            .query("increase(pgwolf_cluster_primary_changes_total{cluster=\"ha\"}[5m]) > 0");
        (!alert.is_empty() && !counted.is_empty() && !changed.is_empty()).then_some(())
    })
    .await;
    assert!(fired.is_some(), "the switchover did not show in Prometheus");
    let moved = eventually(Duration::from_secs(60), || async {
        (timeline(&prometheus) > before).then_some(())
    })
    .await;
    assert!(moved.is_some(), "pg_timeline_id did not move past {before}");

    // Every dashboard panel shows something over the last five minutes
    // (a subquery, as the panel's graph would evaluate it), the failover
    // panels included. An instant query would miss the replicas' lag
    // while they reconnect to the new primary.
    // Bounded retries: a rate() needs two scrapes in its window, which a
    // loaded machine may not have made yet right after the switchover.
    let empty_panels = || -> Vec<String> {
        panel_queries()
            .into_iter()
            .filter(|(_, _, expr)| {
                prometheus
                    .query(&format!("last_over_time(({expr})[5m:1s])"))
                    .is_empty()
            })
            .map(|(file, title, expr)| format!("{file} \"{title}\": {expr}"))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut empty = empty_panels();
    while !empty.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        empty = empty_panels();
    }
    assert!(empty.is_empty(), "panels with no series: {empty:#?}");

    // What each dashboard shows, drawn from the same Prometheus: every
    // panel with series (exit 0). PGWOLF_DASHBOARD_PNGS keeps the images
    // (docs/monitoring/ holds a run's).
    tokio::time::sleep(linger).await;
    let scratch = tempfile::tempdir().unwrap();
    let out_dir = kept.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    // The whole scrape, so the graphs are not a sliver at the right edge.
    let since = (scraping_since.elapsed().as_secs() + 2).to_string();
    let out = run_bounded(
        std::process::Command::new("/usr/bin/python3")
            .arg(workspace_dir().join("scripts/render-dashboards"))
            .args([
                "--prometheus",
                &prometheus.url(),
                "--since",
                &since,
                "--out",
            ])
            .arg(&out_dir),
        Duration::from_secs(180),
    );
    let text = output_text(&out);
    assert!(out.status.success(), "render-dashboards:\n{text}");
    for uid in ["pgwolf-cluster", "pgwolf-pooler", "pgwolf-failover"] {
        let png = std::fs::read(out_dir.join(format!("{uid}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{uid}.png"
        );
    }

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
}
