//! Reconcile scenarios against kube-fake-client, an in-memory Kubernetes
//! API server (see support/fake_api.rs): what one reconcile creates, what
//! the next one repairs or changes, and how the status follows the
//! workloads. The workloads' own controllers (StatefulSet, Deployment) and
//! Patroni do not run here: where a scenario needs their effect, the test
//! writes it as they would (status subresources, the leader Endpoints).

#[path = "support/fake_api.rs"]
mod fake_api;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use pgwolf_controller::api::PostgresCluster;
use pgwolf_controller::reconcile::{self, status};
use serde_json::json;
use std::collections::BTreeMap;

const NS: &str = "demo";
const UID: &str = "00000000-0000-4000-8000-00000000c0de";

/// deploy/examples/cluster-with-pooler.yaml as stored by the API server.
fn stored_example() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/cluster-with-pooler.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut cluster = pgwolf_controller::render::parse_cluster(&text).unwrap();
    cluster.metadata.uid = Some(UID.into());
    cluster.metadata.namespace = Some(NS.into());
    serde_json::to_value(&cluster).unwrap()
}

async fn setup() -> Client {
    fake_api::client(vec![stored_example()]).await
}

async fn cluster(client: &Client) -> PostgresCluster {
    Api::<PostgresCluster>::namespaced(client.clone(), NS)
        .get("main")
        .await
        .unwrap()
}

/// Reconciles the cluster as the API server holds it now.
async fn reconcile_once(client: &Client) -> reconcile::Outcome {
    let c = cluster(client).await;
    reconcile::reconcile(client, &c, &Default::default())
        .await
        .unwrap()
}

fn api<K>(client: &Client) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), NS)
}

/// Name → owner uid of every object of one kind.
async fn owned<K>(client: &Client) -> BTreeMap<String, Vec<String>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    api::<K>(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let uids = o.owner_references().iter().map(|r| r.uid.clone()).collect();
            (o.name_any(), uids)
        })
        .collect()
}

fn condition<'a>(
    s: &'a pgwolf_controller::api::PostgresClusterStatus,
    t: &str,
) -> (&'a str, &'a str) {
    let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[tokio::test]
async fn a_new_cluster_gets_every_child_owned_by_it_and_a_status() {
    let client = setup().await;
    let outcome = reconcile_once(&client).await;

    let mut all = BTreeMap::new();
    all.insert("ServiceAccount", owned::<ServiceAccount>(&client).await);
    all.insert("Role", owned::<Role>(&client).await);
    all.insert("RoleBinding", owned::<RoleBinding>(&client).await);
    all.insert("Secret", owned::<Secret>(&client).await);
    all.insert("ConfigMap", owned::<ConfigMap>(&client).await);
    all.insert("Service", owned::<Service>(&client).await);
    all.insert("StatefulSet", owned::<StatefulSet>(&client).await);
    all.insert(
        "PodDisruptionBudget",
        owned::<PodDisruptionBudget>(&client).await,
    );
    all.insert("Deployment", owned::<Deployment>(&client).await);
    let count: usize = all.values().map(BTreeMap::len).sum();
    assert_eq!(count, outcome.applied, "{all:#?}");
    for (kind, objects) in &all {
        for (name, owners) in objects {
            assert_eq!(owners, &[UID.to_string()], "{kind} {name}");
        }
    }
    for name in ["main", "main-replicas", "main-pooler"] {
        assert!(all["Service"].contains_key(name), "Service {name}");
    }
    assert!(all["Secret"].contains_key("keycloak-db"));
    assert!(all["StatefulSet"].contains_key("main"));
    assert!(all["Deployment"].contains_key("main-pooler"));

    // No pod runs here and Patroni has elected no one: not ready, no
    // primary, and the status says so.
    let stored = cluster(&client).await;
    let s = stored.status.expect("status written");
    assert_eq!(s, outcome.status);
    assert_eq!(condition(&s, status::READY), ("False", "NoPrimary"));
    assert_eq!(s.primary, None);
    assert_eq!(s.observed_generation, stored.metadata.generation);
    assert_eq!(
        outcome.requeue_after,
        reconcile::cluster::REQUEUE_CONVERGING
    );
}

#[tokio::test]
async fn a_deleted_service_is_back_after_the_next_reconcile() {
    let client = setup().await;
    reconcile_once(&client).await;
    let services = api::<Service>(&client);
    let before = services.get("main").await.unwrap();
    services
        .delete("main", &DeleteParams::default())
        .await
        .unwrap();
    assert!(services.get_opt("main").await.unwrap().is_none());

    reconcile_once(&client).await;
    let after = services.get("main").await.unwrap();
    assert_eq!(after.spec, before.spec);
    assert_eq!(after.owner_references()[0].uid, UID);
}

/// Every credential Secret's data, by name.
async fn secret_data(client: &Client) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    api::<Secret>(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let data = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            (s.metadata.name.unwrap(), data)
        })
        .collect()
}

#[tokio::test]
async fn passwords_survive_reconciles_and_only_a_lost_secret_gets_a_new_one() {
    let client = setup().await;
    reconcile_once(&client).await;
    let first = secret_data(&client).await;
    assert!(first["keycloak-db"].contains_key("password"));
    assert!(first["keycloak-db"].contains_key("pooler-jdbc-uri"));

    reconcile_once(&client).await;
    reconcile_once(&client).await;
    assert_eq!(secret_data(&client).await, first);

    // A deleted user Secret: that user gets a new password, nobody else.
    api::<Secret>(&client)
        .delete("keycloak-db", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_once(&client).await;
    let third = secret_data(&client).await;
    assert_ne!(
        third["keycloak-db"]["password"],
        first["keycloak-db"]["password"]
    );
    for (name, data) in &first {
        // The pooler's auth file lists every user's verifier, so it follows.
        if name != "keycloak-db" && name != "main-pooler-credentials" {
            assert_eq!(&third[name], data, "{name}");
        }
    }
}

#[tokio::test]
async fn scaling_the_cluster_changes_the_statefulset() {
    let client = setup().await;
    reconcile_once(&client).await;
    let sts = api::<StatefulSet>(&client);
    assert_eq!(
        sts.get("main").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );

    api::<PostgresCluster>(&client)
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instances": 3}})),
        )
        .await
        .unwrap();
    reconcile_once(&client).await;
    assert_eq!(
        sts.get("main").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
}

#[tokio::test]
async fn the_status_follows_the_workloads_to_ready() {
    let client = setup().await;
    reconcile_once(&client).await;

    // Patroni elects main-0: it writes the leader lock into the Endpoints.
    let renewed = k8s_openapi::jiff::Timestamp::now().to_string();
    let leader: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "main", "namespace": NS,
            "annotations": {"leader": "main-0", "renewTime": renewed, "ttl": "30"}}
    }))
    .unwrap();
    api::<Endpoints>(&client)
        .patch(
            "main",
            &PatchParams::apply("patroni"),
            &Patch::Apply(&leader),
        )
        .await
        .unwrap();
    let s = reconcile_once(&client).await.status;
    assert_eq!(s.primary.as_deref(), Some("main-0"));
    assert_eq!(condition(&s, status::READY), ("False", "InstancesNotReady"));
    assert_eq!(condition(&s, status::PROGRESSING).0, "True");

    // The StatefulSet controller reports its pods ready; the pooler's not yet.
    report_ready::<StatefulSet>(&client, "main").await;
    let s = reconcile_once(&client).await.status;
    assert_eq!(condition(&s, status::READY), ("False", "PoolerNotReady"));

    report_ready::<StatefulSet>(&client, "main").await;
    report_ready::<Deployment>(&client, "main-pooler").await;
    let outcome = reconcile_once(&client).await;
    let s = &outcome.status;
    assert_eq!(condition(s, status::READY), ("True", "AllReady"));
    assert_eq!(condition(s, status::PROGRESSING).0, "False");
    assert_eq!(condition(s, status::DEGRADED).0, "False");
    assert_eq!((s.ready_instances, s.pooler_ready_replicas), (2, 2));
    assert_eq!(outcome.requeue_after, reconcile::cluster::REQUEUE_READY);
    assert_eq!(cluster(&client).await.status.as_ref(), Some(s));

    // The primary is lost: Patroni's lock names nobody. The stored status
    // must stop naming the old primary, not only the computed one.
    let lost: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "main", "namespace": NS,
            "annotations": {"leader": "", "renewTime": renewed, "ttl": "30"}}
    }))
    .unwrap();
    api::<Endpoints>(&client)
        .patch("main", &PatchParams::apply("patroni"), &Patch::Apply(&lost))
        .await
        .unwrap();
    let s = reconcile_once(&client).await.status;
    assert_eq!(s.primary, None);
    assert_eq!(condition(&s, status::READY), ("False", "NoPrimary"));
    let stored = cluster(&client).await.status.expect("a status");
    assert_eq!(
        stored.primary, None,
        "the lost primary is still in the stored status"
    );
    assert_eq!(stored, s);
}

/// What the StatefulSet or Deployment controller writes once its 2 pods
/// are ready on the latest spec. kube-fake-client bumps `generation` on
/// every update, also on a reconcile's no-op apply (the API server only
/// when the spec changes), so "the latest" is the generation the next
/// reconcile's apply will give the object: one more than now.
async fn report_ready<K>(client: &Client, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let objects = api::<K>(client);
    let next = objects
        .get(name)
        .await
        .unwrap()
        .meta()
        .generation
        .unwrap_or(1)
        + 1;
    objects
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": next, "replicas": 2,
                "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reconcile_that_changes_nothing_does_not_rewrite_the_status() {
    let client = setup().await;
    reconcile_once(&client).await;
    let before = cluster(&client).await;
    reconcile_once(&client).await;
    let after = cluster(&client).await;
    assert_eq!(after.status, before.status);
    assert_eq!(after.resource_version(), before.resource_version());
}
