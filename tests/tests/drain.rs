//! A node drain under the primary (the monthly Kubernetes upgrade),
//! without client errors: the controller's rollout step, against
//! kube-fake-client holding the pods, their nodes and the pooler's pod,
//! sees the primary's node cordoned and switches over, with the pooler
//! paused, to a replica on a node that is not, before the drain may evict
//! the pod (the primary's PodDisruptionBudget holds it). Patroni and
//! PostgreSQL are real, started from the rendered patroni.yml on hosts of
//! their own (members named and listening as the pods would), pgwolf is
//! real, and 20 writers go through it.

#[path = "../../controller/tests/support/fake_api.rs"]
mod fake_api;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use pgwolf_controller::resources::Owner;
use pgwolf_controller::rollout::{self, plan};
use pgwolf_tests::failover::Load;
use pgwolf_tests::ha::rendered::{test_cluster, Rendered};
use pgwolf_tests::ha::{HaCluster, HaOptions, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use pgwolf_tests::{connect, userlist, Pgwolf};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "db";

/// The objects the rollout reads: each instance pod on a node of its own
/// (`node-<pod>`), ready, at the StatefulSet's revision, at its member's
/// address; the pooler's pod at pgwolf's address.
fn objects(ha: &HaCluster) -> Vec<serde_json::Value> {
    let mut out = vec![json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "main", "namespace": NS, "generation": 1 },
        "spec": { "replicas": 3, "serviceName": "main-pods",
            "selector": { "matchLabels": { "application": "spilo", "cluster-name": "main" } },
            "template": {} },
        "status": { "replicas": 3, "observedGeneration": 1, "updateRevision": "main-rev1" },
    })];
    let ready = json!([{ "type": "Ready", "status": "True" }]);
    for m in ha.members() {
        out.push(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": format!("node-{}", m.name) },
        }));
        out.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": m.name, "namespace": NS, "labels": {
                "application": "spilo", "cluster-name": "main",
                "controller-revision-hash": "main-rev1" } },
            "spec": { "nodeName": format!("node-{}", m.name),
                "containers": [{ "name": "postgres", "image": "pgwolf-instance" }] },
            "status": { "podIP": m.host, "conditions": ready },
        }));
    }
    out.push(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "main-pooler-0", "namespace": NS, "labels": {
            "app.kubernetes.io/instance": "main", "app.kubernetes.io/component": "pooler" } },
        "spec": { "containers": [{ "name": "pgwolf", "image": "pgwolf" }] },
        "status": { "podIP": "127.0.0.1", "conditions": ready },
    }));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_primary_node_costs_the_writers_no_error() {
    let (cluster, credentials) = test_cluster(json!({ "pooler": { "mode": "transaction" } }));
    let rendered = Rendered::new(&cluster, &credentials);
    let ha = HaCluster::start(HaOptions {
        netns: true,
        rendered: Some(Arc::new(rendered)),
        ..HaOptions::default()
    });
    let admin_password = credentials.pooler.password.clone();
    let urls: Vec<String> = ha.rest_urls().iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!(
        "pool_mode = \"transaction\"\nadmin_users = [\"pgwolf\"]\n\n\
         [clusters.main]\nprovider = \"patroni\"\npatroni_urls = [{}]\n\
         poll_interval = \"200ms\"\nread_only_suffix = \"_ro\"\n\n\
         [databases.{HA_APP_DB}]\ncluster = \"main\"\npool_size = 10\n",
        urls.join(", ")
    );
    let proxy = Pgwolf::start(
        &toml,
        &userlist(&[
            (HA_APP_USER, HA_APP_PASSWORD),
            ("pgwolf", admin_password.as_str()),
        ]),
    );
    connect(proxy.port(), HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB)
        .await
        .batch_execute("CREATE TABLE acks (v bigint PRIMARY KEY)")
        .await
        .unwrap();
    let client = fake_api::client(objects(&ha)).await;
    let owner = Owner::new(&cluster);
    let settings = rollout::Settings {
        pooler_port: proxy.port(),
        ..rollout::Settings::default()
    };

    // Healthy and up to date: the rollout does nothing.
    let idle = rollout::step(&client, &owner, Some(&admin_password), &settings)
        .await
        .expect("a rollout step");
    assert_eq!(idle.step, plan::Step::Done);

    let load = Load::start(proxy.port(), false).await;
    let old = ha.leader().expect("a leader");
    // `kubectl drain` cordons the node first; the primary's budget keeps
    // its pod until the controller has moved the primary.
    Api::<Node>::all(client.clone())
        .patch(
            &format!("node-{old}"),
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "unschedulable": true } })),
        )
        .await
        .unwrap();
    let drained = rollout::step(&client, &owner, Some(&admin_password), &settings)
        .await
        .expect("the drain's switchover");
    let plan::Step::Switchover {
        leader,
        candidate,
        why,
    } = &drained.step
    else {
        panic!("not a switchover: {:?}", drained.step);
    };
    assert_eq!((leader.as_str(), *why), (old.as_str(), plan::Why::Drain));
    let new = ha.leader().expect("a new leader");
    assert_eq!(&new, candidate);
    assert_ne!(new, old);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (writes, reads) = (load.writes.clone(), load.reads.clone());
    load.stop().await;

    let errors = writes.errors.lock().unwrap().clone();
    let acked = writes.acked.lock().unwrap().len();
    let reads_failed = reads.errors.lock().unwrap().len();
    eprintln!(
        "[drain] {old} -> {new}: {acked} writes acknowledged by 20 clients, {} write errors, {reads_failed} read errors; longest write wait {:?}",
        errors.len(),
        writes.longest_wait()
    );
    assert!(
        errors.is_empty(),
        "writers saw errors: {:?}",
        errors.iter().map(|(_, m)| m).collect::<Vec<_>>()
    );
    // The old primary streams from the new one: the pod may go now.
    ha.wait_ready(Duration::from_secs(60));
    let again = rollout::step(&client, &owner, Some(&admin_password), &settings)
        .await
        .unwrap();
    assert_eq!(again.step, plan::Step::Done, "one switchover, no more");
}
