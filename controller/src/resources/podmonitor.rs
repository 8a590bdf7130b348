//! `spec.monitoring.podMonitor`: PodMonitors (the Prometheus Operator's
//! `monitoring.coreos.com/v1`) for the instances' exporters and the
//! pooler's `/metrics`, so an operator-run Prometheus finds them. Only the
//! fields pgwolf sets are typed here; the operator's CRD has many more.

use super::meta::Owner;
use super::monitoring;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    namespaced,
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Which pod label becomes the `job` label.
    pub job_label: String,
    pub selector: LabelSelector,
    pub namespace_selector: NamespaceSelector,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub match_names: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// The container port's name.
    pub port: String,
    pub path: String,
    pub interval: String,
}

/// The PodMonitors `spec.monitoring` asks for: the instances' exporters
/// (with the exporter on) and the pooler (with a pooler).
pub fn pod_monitors(owner: &Owner) -> Vec<PodMonitor> {
    let spec = &owner.cluster.spec;
    if !spec.monitoring.as_ref().is_some_and(|m| m.pod_monitor) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let monitor = |name: String, selector, port: &str| PodMonitor {
        metadata: owner.meta(name, owner.labels("monitoring")),
        spec: PodMonitorSpec {
            job_label: "app.kubernetes.io/component".into(),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            namespace_selector: NamespaceSelector {
                match_names: vec![owner.namespace.clone()],
            },
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: port.into(),
                path: "/metrics".into(),
                interval: "30s".into(),
            }],
        },
    };
    if monitoring::exporter(owner).is_some() {
        out.push(monitor(
            owner.child("postgres"),
            owner.member_selector(),
            "exporter",
        ));
    }
    if spec.pooler.is_some() {
        out.push(monitor(
            owner.child("pooler"),
            owner.pooler_selector(),
            "http",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{desired, test_cluster, test_credentials, Child};

    #[test]
    fn pod_monitors_select_the_exporters_and_the_pooler() {
        let mut c = test_cluster("main");
        c.spec.monitoring =
            Some(serde_json::from_value(serde_json::json!({"podMonitor": true})).unwrap());
        let children = desired(&c, &test_credentials(&c)).unwrap();
        let monitors: Vec<serde_json::Value> = children
            .iter()
            .filter(|o| o.kind() == "PodMonitor")
            .map(|o| serde_json::to_value(o).unwrap())
            .collect();
        assert_eq!(monitors.len(), 2);
        let by_name = |n: &str| {
            monitors
                .iter()
                .find(|m| m["metadata"]["name"] == n)
                .unwrap()
        };
        let pg = by_name("main-postgres");
        assert_eq!(pg["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(pg["spec"]["podMetricsEndpoints"][0]["port"], "exporter");
        assert_eq!(pg["spec"]["namespaceSelector"]["matchNames"][0], "db");
        assert_eq!(
            pg["spec"]["selector"]["matchLabels"]["cluster-name"],
            "main"
        );
        let pooler = by_name("main-pooler");
        assert_eq!(pooler["spec"]["podMetricsEndpoints"][0]["port"], "http");
        assert!(pooler["metadata"]["ownerReferences"][0]["controller"] == true);
        // Without podMonitor, none: a cluster without the Prometheus
        // Operator has no such kind to apply.
        c.spec.monitoring = Some(Default::default());
        let children = desired(&c, &test_credentials(&c)).unwrap();
        assert!(children.iter().all(|o| !matches!(o, Child::PodMonitor(_))));
    }
}
