//! Rolling updates and scale-downs, reconcile by reconcile, against
//! kube-fake-client and a small in-test Patroni REST server. The test plays
//! the StatefulSet controller (recreating deleted pods at the update
//! revision, not ready at first) and Patroni (members, the leader
//! Endpoints, the switchover); the controller under test does the rest.

#[path = "support/fake_api.rs"]
mod fake_api;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use pgwolf_controller::api::PostgresCluster;
use pgwolf_controller::reconcile::{self, status};
use pgwolf_controller::rollout;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const NS: &str = "demo";
const UID: &str = "00000000-0000-4000-8000-00000000c0de";
const SELECTOR: &str = "application=spilo,cluster-name=main";

fn stored_cluster(instances: i32) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/cluster-with-pooler.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut cluster = pgwolf_controller::render::parse_cluster(&text).unwrap();
    cluster.metadata.uid = Some(UID.into());
    cluster.metadata.namespace = Some(NS.into());
    cluster.spec.instances = instances;
    serde_json::to_value(&cluster).unwrap()
}

fn api<K>(client: &Client) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), NS)
}

/// One switchover as the fake Patroni saw it arrive.
#[derive(Debug)]
struct Switch {
    leader: String,
    candidate: String,
    /// Every pod's revision at that moment.
    revisions: BTreeMap<String, String>,
}

#[derive(Default)]
struct PatroniState {
    leader: String,
    /// Members whose Postgres runs (their pod is ready).
    running: BTreeSet<String>,
    /// Members that exist at all (their pod exists).
    members: BTreeSet<String>,
    switchovers: Vec<Switch>,
    /// Answer POST /switchover with this status and do nothing.
    refuse: Option<u16>,
    /// The DCS's dynamic configuration (`GET /config`).
    config: serde_json::Value,
    /// Every `PATCH /config` body, in order.
    patches: Vec<serde_json::Value>,
}

type Shared = Arc<Mutex<PatroniState>>;

/// `GET /cluster` and `POST /switchover` on 127.0.0.1, for every pod (all
/// of them report 127.0.0.1 as their IP).
async fn patroni(client: Client, state: Shared) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (client, state) = (client.clone(), state.clone());
            let service = hyper::service::service_fn(move |req| {
                let (client, state) = (client.clone(), state.clone());
                async move {
                    let (status, body) = answer(req, &client, &state).await;
                    let resp = hyper::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    port
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    client: &Client,
    state: &Shared,
) -> (u16, String) {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/cluster") => {
            let s = state.lock().unwrap();
            let members: Vec<_> = s
                .members
                .iter()
                .map(|name| {
                    let running = s.running.contains(name);
                    let mut m = json!({
                        "name": name, "host": "127.0.0.1", "port": 5432, "timeline": 1,
                        "role": if *name == s.leader { "leader" } else { "replica" },
                        "state": if running { "running" } else { "starting" },
                    });
                    if *name != s.leader {
                        m["lag"] = if running { json!(0) } else { json!("unknown") };
                    }
                    m
                })
                .collect();
            (200, json!({ "members": members }).to_string())
        }
        ("POST", "/switchover") => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let asked: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let (leader, candidate) = (
                asked["leader"].as_str().unwrap().to_string(),
                asked["candidate"].as_str().unwrap().to_string(),
            );
            if let Some(code) = state.lock().unwrap().refuse {
                return (code, "Switchover failed".into());
            }
            let revisions = revisions(client).await;
            {
                let mut s = state.lock().unwrap();
                if s.leader != leader || !s.running.contains(&candidate) {
                    return (
                        412,
                        format!("leader name does not match or {candidate} is not running"),
                    );
                }
                s.leader = candidate.clone();
                s.switchovers.push(Switch {
                    leader,
                    candidate: candidate.clone(),
                    revisions,
                });
            }
            set_leader_endpoints(client, &candidate).await;
            (
                200,
                format!("Successfully switched over to \"{candidate}\""),
            )
        }
        ("GET", "/config") => (200, state.lock().unwrap().config.to_string()),
        ("PATCH", "/config") => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let mut s = state.lock().unwrap();
            for (k, v) in patch.as_object().unwrap() {
                if k == "postgresql" {
                    for (p, pv) in v["parameters"].as_object().unwrap() {
                        s.config["postgresql"]["parameters"][p] = pv.clone();
                    }
                } else {
                    s.config[k] = v.clone();
                }
            }
            s.patches.push(patch);
            (200, s.config.to_string())
        }
        _ => (404, String::new()),
    }
}

/// Patroni's Kubernetes DCS: the leader lock in the `<cluster>` Endpoints.
async fn set_leader_endpoints(client: &Client, leader: &str) {
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "main", "namespace": NS, "annotations": { "leader": leader } },
    });
    api::<Endpoints>(client)
        .patch(
            "main",
            &PatchParams::apply("patroni").force(),
            &Patch::Apply(ep),
        )
        .await
        .unwrap();
}

async fn pods(client: &Client) -> Vec<Pod> {
    let mut pods = api::<Pod>(client)
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .unwrap()
        .items;
    pods.sort_by_key(|p| p.name_any());
    pods
}

async fn revisions(client: &Client) -> BTreeMap<String, String> {
    pods(client)
        .await
        .iter()
        .map(|p| {
            let rev = p.labels().get("controller-revision-hash").cloned();
            (p.name_any(), rev.unwrap_or_default())
        })
        .collect()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the StatefulSet controller and the kubelet would do between two
/// reconciles: report the current spec as observed at `revision`, turn
/// pods created last round ready, and create missing pods at `revision`
/// (not ready yet). Patroni's members follow the pods.
struct Cluster {
    client: Client,
    patroni: Shared,
    settings: reconcile::cluster::Settings,
}

impl Cluster {
    async fn new(instances: i32, leader: &str) -> Cluster {
        let client = fake_api::client(vec![stored_cluster(instances)]).await;
        let patroni_state: Shared = Arc::default();
        let port = patroni(client.clone(), patroni_state.clone()).await;
        let c = Cluster {
            client,
            patroni: patroni_state,
            settings: reconcile::cluster::Settings {
                rollout: rollout::Settings {
                    patroni_port: port,
                    ..Default::default()
                },
                postgres: None,
                ..Default::default()
            },
        };
        // What the rendered bootstrap.dcs seeded, numbers as Patroni
        // returns them, and a parameter the spec does not name (a cluster
        // first made by Spilo has Spilo's wal_level there).
        c.patroni.lock().unwrap().config = json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "failsafe_mode": true, "synchronous_mode": false,
            "postgresql": { "parameters": {
                "max_connections": 200, "shared_buffers": "256MB", "wal_level": "logical" } },
        });
        c.reconcile().await.unwrap();
        for i in 0..instances {
            c.create_pod(&format!("main-{i}"), "main-rev1", true).await;
        }
        c.patroni.lock().unwrap().leader = leader.to_string();
        set_leader_endpoints(&c.client, leader).await;
        c.statefulset_controller("main-rev1").await;
        c
    }

    async fn reconcile(&self) -> Result<reconcile::Outcome, reconcile::Error> {
        let cluster: PostgresCluster = api(&self.client).get("main").await.unwrap();
        reconcile::reconcile(&self.client, &cluster, &self.settings).await
    }

    async fn create_pod(&self, name: &str, revision: &str, is_ready: bool) {
        let pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": NS, "labels": {
                "application": "spilo", "cluster-name": "main",
                "controller-revision-hash": revision } },
            "spec": { "containers": [{ "name": "postgres", "image": "spilo" }] },
        }))
        .unwrap();
        api::<Pod>(&self.client)
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        self.set_ready(name, is_ready).await;
    }

    async fn set_ready(&self, name: &str, is_ready: bool) {
        let status = if is_ready { "True" } else { "False" };
        api::<Pod>(&self.client)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": { "podIP": "127.0.0.1",
                    "conditions": [{ "type": "Ready", "status": status }] } })),
            )
            .await
            .unwrap();
        let mut s = self.patroni.lock().unwrap();
        s.members.insert(name.to_string());
        if is_ready {
            s.running.insert(name.to_string());
        } else {
            s.running.remove(name);
        }
    }

    async fn statefulset_controller(&self, revision: &str) {
        let sts_api = api::<StatefulSet>(&self.client);
        let sts = sts_api.get("main").await.unwrap();
        let replicas = sts.spec.as_ref().unwrap().replicas.unwrap();
        // kube-fake-client bumps generation on every apply, even a no-op
        // one: the next reconcile's apply makes it one more than now.
        let next = sts.metadata.generation.unwrap_or(1) + 1;
        sts_api
            .patch_status(
                "main",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": { "observedGeneration": next,
                    "replicas": replicas, "updateRevision": revision } })),
            )
            .await
            .unwrap();
        let existing = pods(&self.client).await;
        for p in &existing {
            if !ready(p) {
                self.set_ready(&p.name_any(), true).await;
            }
        }
        for i in 0..replicas {
            let name = format!("main-{i}");
            if !existing.iter().any(|p| p.name_any() == name) {
                self.create_pod(&name, revision, false).await;
            }
        }
        // Scaled down: the StatefulSet removes the highest ordinals.
        for p in &existing {
            let ordinal: i32 = p.name_any()["main-".len()..].parse().unwrap();
            if ordinal >= replicas {
                api::<Pod>(&self.client)
                    .delete(&p.name_any(), &Default::default())
                    .await
                    .unwrap();
                let mut s = self.patroni.lock().unwrap();
                s.members.remove(&p.name_any());
                s.running.remove(&p.name_any());
            }
        }
    }

    /// A pod the last reconcile deleted: gone from the API and from
    /// Patroni's running members.
    async fn deleted_since(&self, before: &BTreeMap<String, String>) -> Vec<String> {
        let now = revisions(&self.client).await;
        let gone: Vec<String> = before
            .keys()
            .filter(|n| !now.contains_key(*n))
            .cloned()
            .collect();
        let mut s = self.patroni.lock().unwrap();
        for n in &gone {
            s.running.remove(n);
            s.members.remove(n);
        }
        gone
    }

    fn leader(&self) -> String {
        self.patroni.lock().unwrap().leader.clone()
    }
}

#[tokio::test]
async fn an_update_recreates_replicas_first_then_switches_over_then_the_old_primary() {
    let c = Cluster::new(3, "main-1").await;
    // All at the current revision: nothing to do, nothing deleted.
    let before = revisions(&c.client).await;
    let outcome = c.reconcile().await.unwrap();
    assert!(c.deleted_since(&before).await.is_empty());
    assert_ne!(outcome.requeue_after, reconcile::cluster::REQUEUE_ROLLING);

    // The pod template changed: the StatefulSet reports a new revision.
    c.statefulset_controller("main-rev2").await;
    let mut events = Vec::new();
    let mut rolling_seen = false;
    for _ in 0..30 {
        let before = revisions(&c.client).await;
        let unready: Vec<String> = pods(&c.client)
            .await
            .iter()
            .filter(|p| !ready(p))
            .map(|p| p.name_any())
            .collect();
        let switches = c.patroni.lock().unwrap().switchovers.len();
        let outcome = c.reconcile().await.unwrap();
        let deleted = c.deleted_since(&before).await;
        assert!(deleted.len() <= 1, "one pod at a time: {deleted:?}");
        if !unready.is_empty() {
            assert!(
                deleted.is_empty(),
                "{deleted:?} deleted while {unready:?} not ready"
            );
            let now = c.patroni.lock().unwrap().switchovers.len();
            assert_eq!(now, switches, "a switchover while {unready:?} not ready");
        }
        events.extend(deleted.into_iter().map(|p| format!("delete {p}")));
        if c.patroni.lock().unwrap().switchovers.len() > switches {
            events.push(format!("switchover to {}", c.leader()));
        }
        let progressing = outcome
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == status::PROGRESSING)
            .unwrap();
        if progressing.reason == "RollingUpdate" {
            rolling_seen = true;
            assert_eq!(outcome.requeue_after, reconcile::cluster::REQUEUE_ROLLING);
        }
        let all_new = revisions(&c.client)
            .await
            .values()
            .all(|r| r == "main-rev2");
        if all_new && outcome.requeue_after != reconcile::cluster::REQUEUE_ROLLING {
            break;
        }
        c.statefulset_controller("main-rev2").await;
    }
    assert!(rolling_seen, "the status never said RollingUpdate");
    let candidate = c.leader();
    assert_eq!(
        events,
        [
            "delete main-2".to_string(),
            "delete main-0".into(),
            format!("switchover to {candidate}"),
            "delete main-1".into(),
        ]
    );
    {
        let switches = &c.patroni.lock().unwrap().switchovers;
        assert_eq!(switches.len(), 1);
        let s = &switches[0];
        assert_eq!(s.leader, "main-1");
        assert_ne!(s.candidate, "main-1");
        for (pod, rev) in &s.revisions {
            if *pod != s.leader {
                assert_eq!(rev, "main-rev2", "{pod} not updated at the switchover");
            }
        }
        assert_eq!(s.revisions["main-1"], "main-rev1");
    }
    let end = revisions(&c.client).await;
    assert_eq!(end.len(), 3);
    assert!(end.values().all(|r| r == "main-rev2"), "{end:?}");
}

#[tokio::test]
async fn a_refused_switchover_is_an_error_and_deletes_nothing() {
    let c = Cluster::new(2, "main-0").await;
    c.statefulset_controller("main-rev2").await;
    // main-1 first: a replica.
    let before = revisions(&c.client).await;
    c.reconcile().await.unwrap();
    assert_eq!(c.deleted_since(&before).await, ["main-1"]);
    c.statefulset_controller("main-rev2").await;
    c.statefulset_controller("main-rev2").await;

    c.patroni.lock().unwrap().refuse = Some(503);
    let before = revisions(&c.client).await;
    let err = c.reconcile().await.unwrap_err();
    assert_eq!(err.kind(), "rollout");
    assert!(err.to_string().contains("503"), "{err}");
    assert!(c.deleted_since(&before).await.is_empty());
    assert_eq!(c.leader(), "main-0");
    let stored: PostgresCluster = api(&c.client).get("main").await.unwrap();
    let progressing = stored
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == status::PROGRESSING)
        .unwrap();
    assert!(
        progressing.message.contains("rolling update failed"),
        "{progressing:?}"
    );

    // Patroni agrees again: the rollout carries on where it stopped.
    c.patroni.lock().unwrap().refuse = None;
    c.statefulset_controller("main-rev2").await;
    c.reconcile().await.unwrap();
    assert_eq!(c.leader(), "main-1");
}

#[tokio::test]
async fn scaling_down_first_moves_the_primary_out_of_the_pod_that_goes() {
    let c = Cluster::new(3, "main-2").await;
    let cluster_api = api::<PostgresCluster>(&c.client);
    cluster_api
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "instances": 2 } })),
        )
        .await
        .unwrap();
    let replicas = |s: StatefulSet| s.spec.unwrap().replicas.unwrap();

    c.reconcile().await.unwrap();
    // Held at 3 while main-2 led; switched over to a staying member.
    let sts = api::<StatefulSet>(&c.client).get("main").await.unwrap();
    assert_eq!(replicas(sts), 3);
    let leader = c.leader();
    assert!(leader == "main-0" || leader == "main-1", "{leader}");
    assert_eq!(c.patroni.lock().unwrap().switchovers.len(), 1);

    // The next reconcile may shrink it.
    c.statefulset_controller("main-rev1").await;
    c.reconcile().await.unwrap();
    let sts = api::<StatefulSet>(&c.client).get("main").await.unwrap();
    assert_eq!(replicas(sts), 2);
    c.statefulset_controller("main-rev1").await;
    let left: Vec<String> = revisions(&c.client).await.into_keys().collect();
    assert_eq!(left, ["main-0", "main-1"]);
    assert_eq!(c.patroni.lock().unwrap().switchovers.len(), 1);
}

#[tokio::test]
async fn a_parameter_change_goes_to_patroni_before_any_pod_is_recreated() {
    let c = Cluster::new(3, "main-0").await;
    c.reconcile().await.unwrap();
    assert!(
        c.patroni.lock().unwrap().patches.is_empty(),
        "nothing changed"
    );

    api::<PostgresCluster>(&c.client)
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "postgresql": { "parameters": {
                "max_connections": "200", "shared_buffers": "256MB", "work_mem": "64MB" } } } })),
        )
        .await
        .unwrap();
    let before = revisions(&c.client).await;
    c.reconcile().await.unwrap();
    assert!(c.deleted_since(&before).await.is_empty());
    assert_eq!(
        c.patroni.lock().unwrap().patches,
        [json!({ "postgresql": { "parameters": { "work_mem": "64MB" } } })]
    );
    let config = c.patroni.lock().unwrap().config.clone();
    assert_eq!(config["postgresql"]["parameters"]["wal_level"], "logical");

    // The changed template then rolls out; the DCS is not patched again.
    c.statefulset_controller("main-rev2").await;
    let before = revisions(&c.client).await;
    c.reconcile().await.unwrap();
    assert_eq!(c.deleted_since(&before).await, ["main-2"]);
    assert_eq!(c.patroni.lock().unwrap().patches.len(), 1);
}

/// Puts each pod on a node of its own (`node-<pod>`) and creates the nodes.
async fn spread_over_nodes(c: &Cluster) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    for p in pods(&c.client).await {
        let node = format!("node-{}", p.name_any());
        let n: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": { "name": node },
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
        api::<Pod>(&c.client)
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "nodeName": node } })),
            )
            .await
            .unwrap();
    }
}

async fn cordon(c: &Cluster, node: &str) {
    Api::<Node>::all(c.client.clone())
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "unschedulable": true } })),
        )
        .await
        .unwrap();
}

/// `kubectl drain` cordons the node, then evicts its pods; the primary's
/// PodDisruptionBudget refuses its eviction until the controller has moved
/// the primary to a replica on a node that is not cordoned. Nothing is
/// deleted: the drain itself evicts the pod, now a replica.
#[tokio::test]
async fn a_cordoned_primary_node_makes_a_switchover_to_a_schedulable_node() {
    let c = Cluster::new(3, "main-0").await;
    spread_over_nodes(&c).await;
    let before = revisions(&c.client).await;
    c.reconcile().await.unwrap();
    assert!(c.patroni.lock().unwrap().switchovers.is_empty());

    // The drain of main-0's node, and main-1's node cordoned too (a
    // rolling node upgrade): only main-2 may take over.
    cordon(&c, "node-main-1").await;
    cordon(&c, "node-main-0").await;
    let outcome = c.reconcile().await.unwrap();
    assert_eq!(c.leader(), "main-2");
    {
        let s = c.patroni.lock().unwrap();
        assert_eq!(s.switchovers.len(), 1);
        assert_eq!(
            (
                s.switchovers[0].leader.as_str(),
                s.switchovers[0].candidate.as_str()
            ),
            ("main-0", "main-2")
        );
    }
    assert!(
        c.deleted_since(&before).await.is_empty(),
        "the drain deletes, not us"
    );
    let progressing = outcome
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == status::PROGRESSING)
        .unwrap();
    assert!(
        progressing.message.contains("drained"),
        "{}",
        progressing.message
    );
    // Once moved, nothing more: no second switchover while cordoned.
    c.reconcile().await.unwrap();
    assert_eq!(c.patroni.lock().unwrap().switchovers.len(), 1);
}
