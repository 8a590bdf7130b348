//! `spec.monitoring`: PostgreSQL's metrics for Prometheus, from the
//! field's standard exporter beside each instance.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Metrics of every instance for Prometheus (docs/operations.md,
/// "Monitoring"). pgwolf's own metrics are on the pooler's port `http`
/// (9930) whether this is set or not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A postgres_exporter sidecar in every instance pod, serving
    /// `/metrics` on port 9187 (named `exporter`) with the query file of
    /// deploy/monitoring (ConfigMap `<cluster>-monitoring`). It logs in
    /// over the pod's loopback as `pgwolf_monitor`, a role with
    /// `pg_monitor` only, whose password is in
    /// `<cluster>-pgwolf-monitor-credentials`. The exporter comes with the
    /// instance image. Default true.
    #[serde(default = "yes")]
    pub exporter: bool,
    /// PodMonitors (Prometheus Operator, `monitoring.coreos.com/v1`)
    /// `<cluster>-postgres` for the exporters and `<cluster>-pooler` for
    /// pgwolf's `/metrics`, scraped every 30 s. Needs the operator's CRDs.
    /// Default false.
    #[serde(default)]
    pub pod_monitor: bool,
    /// ConfigMap `<cluster>-scrape-config` with the `scrape_configs`
    /// entries (Kubernetes pod discovery) that find the same targets, for
    /// a Prometheus without the operator. Default false.
    #[serde(default)]
    pub scrape_config: bool,
    /// CPU and memory of the exporter container. Default requests 10m CPU
    /// and 32Mi memory, limit 64Mi memory.
    #[serde(default = "exporter_resources")]
    pub resources: ResourceRequirements,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        MonitoringSpec {
            exporter: yes(),
            pod_monitor: false,
            scrape_config: false,
            resources: exporter_resources(),
        }
    }
}

fn yes() -> bool {
    true
}

fn exporter_resources() -> ResourceRequirements {
    super::cluster::resources("10m", "32Mi", "64Mi")
}
