//! `spec.monitoring.scrapeConfig`: for a Prometheus run without the
//! Prometheus Operator, the `scrape_configs` entries that find this
//! cluster's exporters and poolers through Kubernetes pod discovery, in
//! ConfigMap `<cluster>-scrape-config` to paste into (or mount next to)
//! prometheus.yml. The same targets as the PodMonitors.

use super::meta::Owner;
use super::monitoring;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const KEY: &str = "scrape-configs.yaml";

/// The ConfigMap, when `spec.monitoring.scrapeConfig` asks for it.
pub fn config_map(owner: &Owner) -> Result<Option<ConfigMap>, serde_saphyr::SerializeError> {
    let spec = &owner.cluster.spec;
    if !spec.monitoring.as_ref().is_some_and(|m| m.scrape_config) {
        return Ok(None);
    }
    let mut jobs = Vec::new();
    if monitoring::exporter(owner).is_some() {
        jobs.push(job(owner, "postgres", &owner.member_selector(), "exporter"));
    }
    if spec.pooler.is_some() {
        jobs.push(job(owner, "pooler", &owner.pooler_selector(), "http"));
    }
    let yaml = serde_saphyr::to_string(&crate::yaml::canonical(&Value::Array(jobs)))?;
    let text = format!(
        "# scrape_configs entries for PostgresCluster {ns}/{name} (pgwolf-controller).\n\
         # Prometheus needs get, list and watch on pods in namespace {ns}.\n{yaml}",
        ns = owner.namespace,
        name = owner.name,
    );
    Ok(Some(ConfigMap {
        metadata: owner.meta(owner.child("scrape-config"), owner.labels("monitoring")),
        data: Some(BTreeMap::from([(KEY.to_string(), text)])),
        ..Default::default()
    }))
}

/// One job: pods of the namespace, kept when they carry every label of
/// `selector` and the port is the one named `port`; `pod`, `namespace`
/// and `cluster` labels on every series.
fn job(owner: &Owner, what: &str, selector: &BTreeMap<String, String>, port: &str) -> Value {
    let mut relabel: Vec<Value> = selector
        .iter()
        .map(|(k, v)| {
            json!({
                "source_labels": [format!("__meta_kubernetes_pod_label_{}", sanitize(k))],
                "regex": regex_escape(v),
                "action": "keep",
            })
        })
        .collect();
    relabel.extend([
        json!({
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": port,
            "action": "keep",
        }),
        json!({"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}),
        json!({"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}),
        json!({"replacement": owner.name, "target_label": "cluster"}),
    ]);
    json!({
        "job_name": format!("{}/{}/{what}", owner.namespace, owner.name),
        "scrape_interval": "30s",
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [owner.namespace]}}],
        "relabel_configs": relabel,
    })
}

/// Prometheus's meta label for a Kubernetes label: every character other
/// than a letter, digit or `_` becomes `_`.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value as an exact regex (`.` in a name must not match any
/// character).
fn regex_escape(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_and_values_as_prometheus_wants_them() {
        assert_eq!(
            super::sanitize("app.kubernetes.io/component"),
            "app_kubernetes_io_component"
        );
        assert_eq!(super::regex_escape("a.b"), "a\\.b");
    }
}
