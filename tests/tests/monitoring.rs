//! deploy/monitoring/ against the real thing: Debian's Prometheus scrapes
//! pgwolf and a postgres_exporter (with pgwolf's query file) per member of
//! a three-member Patroni cluster while clients write through pgwolf, and
//! evaluates the alert rules. Every metric each rule reads has series,
//! every rule evaluates without error, nothing but info alerts fires on
//! the healthy cluster, a switchover through pgwolf fires
//! PgwolfPrimaryChanged and counts itself, and every Grafana panel's query
//! returns series afterwards. `promtool` checks the rules and runs their
//! unit tests.

use pgwolf_tests::certs::Ca;
use pgwolf_tests::clients::simple_value;
use pgwolf_tests::ha::{
    HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER, HA_SUPERUSER, HA_SUPERUSER_PASSWORD,
};
use pgwolf_tests::prometheus::{metric_names, Job, PgExporter, Prometheus};
use pgwolf_tests::proxy::Pgwolf;
use pgwolf_tests::time::eventually;
use pgwolf_tests::tools::{run_bounded, workspace_dir};
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

/// What Grafana needs of each dashboard file, short of its schema: a
/// uid and title, the data source variable every query uses, panels with
/// unique ids inside the 24-column grid, every target with a refId and an
/// expression, and every variable a query names defined.
#[test]
fn dashboards_are_well_formed() {
    let dir = monitoring_dir().join("grafana");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let at = file.display();
        assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "{at}");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{at}");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(vars.contains(&"datasource"), "{at}");
        let mut ids = std::collections::BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(
                ids.insert(p["id"].as_i64().unwrap()),
                "{at}: duplicate panel id"
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_i64().unwrap(), g["w"].as_i64().unwrap());
            assert!(
                x >= 0 && w > 0 && x + w <= 24,
                "{at}: {} off the grid",
                p["title"]
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{at}");
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.is_empty() && t["refId"].is_string(), "{at}");
                if expr.contains("$cluster") {
                    assert!(vars.contains(&"cluster"), "{at}: $cluster undefined");
                }
                count += 1;
            }
        }
    }
    assert!(count >= 30, "{count} panel queries");
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
    let prometheus = Prometheus::start(
        &[
            Job {
                name: "pgwolf".into(),
                targets: vec![format!("127.0.0.1:{http}")],
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
        let n = |r: &[serde_json::Value]| r.first().map(|s| s["value"][1].clone());
        (n(&up) == Some("3".into()) && n(&replicas) == Some("2".into()) && !pool.is_empty())
            .then_some(())
    })
    .await;
    assert!(
        scraped.is_some(),
        "Prometheus never saw the cluster and the pool"
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
        "metrics no target exports: {missing:#?}"
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

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
}
