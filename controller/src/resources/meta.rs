//! Names, labels and owner references every child shares, so the builders
//! cannot disagree on them.

use crate::api::{PostgresCluster, TlsSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Patroni's Kubernetes DCS finds its pods and objects by these labels
/// (Spilo's `KUBERNETES_LABELS` plus the scope label); the pooler selects
/// members by the same ones.
pub const SPILO_LABEL: (&str, &str) = ("application", "spilo");
pub const SCOPE_LABEL: &str = "cluster-name";
/// The label Patroni sets on each pod to its role (`master`/`primary`,
/// `replica`).
pub const ROLE_LABEL: &str = "spilo-role";

pub const POSTGRES_PORT: i32 = 5432;
pub const PATRONI_PORT: i32 = 8008;
pub const POOLER_PORT: i32 = 6432;
pub const POOLER_HTTP_PORT: i32 = 9930;

/// Everything a builder needs to know about the cluster besides its spec.
pub struct Owner<'a> {
    pub cluster: &'a PostgresCluster,
    pub name: String,
    pub namespace: String,
    owner_ref: Option<OwnerReference>,
}

impl<'a> Owner<'a> {
    /// The reference is `None` for a manifest that never reached the API
    /// server (no uid): a child pointing at a uid that does not exist would
    /// be deleted by the garbage collector.
    pub fn new(cluster: &'a PostgresCluster) -> Self {
        Owner {
            cluster,
            name: cluster.name_any(),
            namespace: cluster.namespace().unwrap_or_else(|| "default".to_string()),
            owner_ref: cluster.controller_owner_ref(&()),
        }
    }

    pub fn has_owner_ref(&self) -> bool {
        self.owner_ref.is_some()
    }

    /// `<cluster>-<suffix>`.
    pub fn child(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Labels on every object the controller makes for this cluster.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "pgwolf".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
            ("app.kubernetes.io/component".into(), component.into()),
            (
                "app.kubernetes.io/managed-by".into(),
                "pgwolf-controller".into(),
            ),
        ])
    }

    /// What Patroni and the Services select the cluster's pods by.
    pub fn member_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (SPILO_LABEL.0.into(), SPILO_LABEL.1.into()),
            (SCOPE_LABEL.into(), self.name.clone()),
        ])
    }

    /// `member_selector` as a label selector string, for pgwolf's config.
    pub fn member_selector_string(&self) -> String {
        self.member_selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn pooler_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/instance".into(), self.name.clone()),
            ("app.kubernetes.io/component".into(), "pooler".into()),
        ])
    }

    /// `metadata` of a child: name, namespace, labels, owner reference.
    pub fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: self.owner_ref.clone().map(|r| vec![r]),
            ..Default::default()
        }
    }

    /// The instances' certificate Secrets: the manifest's `spec.tls`, else
    /// the one the controller issues (`<cluster>-tls`, which carries the
    /// CA's certificate as `ca.crt` too).
    pub fn tls(&self) -> TlsSpec {
        self.cluster.spec.tls.clone().unwrap_or_else(|| TlsSpec {
            secret_name: self.child("tls"),
            ca_secret_name: Some(self.child("tls")),
        })
    }

    /// Whether the controller issues the certificates (no `spec.tls`).
    pub fn issues_tls(&self) -> bool {
        self.cluster.spec.tls.is_none()
    }

    /// Host name of a Service of this cluster inside the Kubernetes cluster.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PostgresClusterSpec;

    fn cluster(uid: Option<&str>) -> PostgresCluster {
        let spec: PostgresClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut c = PostgresCluster::new("main", spec);
        c.metadata.namespace = Some("db".into());
        c.metadata.uid = uid.map(str::to_string);
        c
    }

    #[test]
    fn children_point_at_the_cluster_as_controller() {
        let c = cluster(Some("0b8c-uid"));
        let owner = Owner::new(&c);
        let meta = owner.meta(owner.child("replicas"), owner.labels("postgres"));
        let refs = meta.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "PostgresCluster");
        assert_eq!(refs[0].api_version, "pgwolf.io/v1alpha1");
        assert_eq!(refs[0].name, "main");
        assert_eq!(refs[0].uid, "0b8c-uid");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(meta.name.as_deref(), Some("main-replicas"));
        assert_eq!(meta.namespace.as_deref(), Some("db"));
    }

    #[test]
    fn no_owner_reference_without_a_uid() {
        let c = cluster(None);
        let owner = Owner::new(&c);
        assert!(!owner.has_owner_ref());
        assert_eq!(
            owner.meta("x".into(), BTreeMap::new()).owner_references,
            None
        );
    }

    #[test]
    fn member_selector_string_is_what_pgwolf_parses() {
        let c = cluster(None);
        assert_eq!(
            Owner::new(&c).member_selector_string(),
            "application=spilo,cluster-name=main"
        );
    }
}
