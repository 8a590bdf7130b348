//! The cluster spec: PostgreSQL, Patroni, storage, TLS; the pooler and users
//! have their own files.

use super::{PoolerSpec, PostgresClusterStatus, UserSpec};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The instance image (deploy/images/instance, built by
/// scripts/build-images); the tag follows the controller's version, like
/// the pooler's.
pub const DEFAULT_IMAGE: &str = concat!("pgwolf-instance:", env!("CARGO_PKG_VERSION"));

/// A highly available PostgreSQL cluster: Patroni-managed instances in a
/// StatefulSet (Patroni's Kubernetes DCS keeps the leader in the `<name>`
/// Endpoints), optionally the pgwolf pooler in front, and one Secret per
/// declared user.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pgwolf.io",
    version = "v1alpha1",
    kind = "PostgresCluster",
    namespaced,
    status = "PostgresClusterStatus",
    shortname = "pgc",
    doc = "A PostgreSQL cluster managed by pgwolf-controller: Patroni instances, optionally the pgwolf pooler, and Secrets for its users.",
    validation = Rule::new("size(self.metadata.name) <= 40").message("metadata.name: at most 40 characters, so the names of the cluster's objects fit Kubernetes' limits"),
    category = "pgwolf",
    printcolumn(
        name = "Instances",
        type_ = "integer",
        json_path = ".spec.instances",
        description = "Desired PostgreSQL instances"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyInstances",
        description = "Instances running and ready"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.primary",
        description = "The pod Patroni holds the leader lock for"
    ),
    printcolumn(
        name = "Pooler Ready",
        type_ = "integer",
        json_path = ".status.poolerReadyReplicas",
        description = "Pooler replicas ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresClusterSpec {
    /// PostgreSQL major version: Patroni runs the binaries of
    /// `/usr/lib/postgresql/<version>/bin` in the image, which must carry
    /// them (scripts/build-images --postgres-major). Default 15, the one
    /// Debian 12 ships and this project's tests run. Changing it on a
    /// running cluster does not upgrade the data directory.
    #[serde(default = "postgres_version")]
    #[schemars(range(min = 13, max = 17))]
    pub postgres_version: i32,

    /// Container image of the instances: PostgreSQL, Patroni and pgBackRest
    /// (deploy/images/instance). Default `pgwolf-instance:<controller
    /// version>`.
    #[serde(default = "image")]
    #[schemars(length(min = 1))]
    pub image: String,

    /// Number of PostgreSQL instances (one primary, the rest streaming
    /// replicas). Default 2.
    #[serde(default = "instances")]
    #[schemars(range(min = 1, max = 16))]
    pub instances: i32,

    /// CPU and memory of each instance's PostgreSQL container. Default
    /// requests 250m CPU and 512Mi memory, limit 512Mi memory.
    #[serde(default = "instance_resources")]
    pub resources: ResourceRequirements,

    /// Each instance's data volume.
    #[serde(default)]
    pub storage: StorageSpec,

    /// PostgreSQL settings.
    #[serde(default)]
    pub postgresql: PostgresqlSpec,

    /// Patroni's timing (leader lock TTL, loop and retry intervals).
    #[serde(default)]
    pub patroni: PatroniSpec,

    /// Roles the controller creates, each with its databases and a Secret
    /// holding its credentials. Default none.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub users: Vec<UserSpec>,

    /// The pgwolf pooler in front of the cluster; unset for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerSpec>,

    /// Backups with pgBackRest: WAL archiving to every repository, and
    /// replicas seeded from them; unset for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<super::BackupsSpec>,

    /// PostgreSQL's metrics for Prometheus: a postgres_exporter sidecar per
    /// instance. Unset for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<super::MonitoringSpec>,

    /// Server TLS from the user's Secrets. Default: unset, and the
    /// controller issues a CA (`<cluster>-ca`) and a server certificate
    /// (`<cluster>-tls`) that every instance serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// An instance's data volume (a PersistentVolumeClaim per instance). Fixed
/// once the cluster exists: a StatefulSet's claim templates cannot change,
/// and resizing the claims themselves is not implemented yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("storage cannot be changed after the cluster is created"))]
pub struct StorageSpec {
    /// Requested size. Default `10Gi`.
    #[serde(default = "storage_size")]
    pub size: Quantity,
    /// StorageClass of the claims; unset for the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: storage_size(),
            storage_class_name: None,
        }
    }
}

/// PostgreSQL configuration, handed to Patroni.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlSpec {
    /// postgresql.conf parameters, e.g. `max_connections: "200"`. Patroni
    /// applies them cluster-wide through its DCS and restarts when one needs
    /// it. Default none (Spilo's tuned defaults).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// Patroni's leader-election timing. Patroni requires
/// `loopWait + 2 * retryTimeout <= ttl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.loopWait + 2 * self.retryTimeout <= self.ttl").message("patroni: loopWait + 2 * retryTimeout must not exceed ttl"))]
pub struct PatroniSpec {
    /// Seconds the leader lock lives without renewal; a primary that cannot
    /// renew it within this demotes itself. Default 30.
    #[serde(default = "ttl")]
    #[schemars(range(min = 5, max = 3600))]
    pub ttl: i32,
    /// Seconds between Patroni's HA loop runs. Default 10.
    #[serde(default = "loop_wait")]
    #[schemars(range(min = 1, max = 600))]
    pub loop_wait: i32,
    /// Seconds Patroni retries the DCS and PostgreSQL before giving up on an
    /// operation. Default 10.
    #[serde(default = "retry_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub retry_timeout: i32,
    /// Patroni's `failsafe_mode`: a primary that cannot reach the
    /// Kubernetes API (an upgrade of the control plane, say) stays primary
    /// while it reaches every other member's Patroni. Default true.
    #[serde(default = "failsafe_mode")]
    pub failsafe_mode: bool,
    /// Patroni's `synchronous_mode`: a commit is acknowledged once a
    /// replica has it too, and only such a replica is promoted, so a
    /// failover loses no acknowledged transaction; a commit waits while no
    /// replica is in sync. Default false.
    #[serde(default)]
    pub synchronous_mode: bool,
}

impl Default for PatroniSpec {
    fn default() -> Self {
        PatroniSpec {
            ttl: ttl(),
            loop_wait: loop_wait(),
            retry_timeout: retry_timeout(),
            failsafe_mode: failsafe_mode(),
            synchronous_mode: false,
        }
    }
}

/// Server certificates from Secrets the user manages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) with the server
    /// certificate and key.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// A Secret whose `ca.crt` is the CA clients and replicas verify against;
    /// unset for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_secret_name: Option<String>,
}

fn postgres_version() -> i32 {
    15
}
fn image() -> String {
    DEFAULT_IMAGE.to_string()
}
fn instances() -> i32 {
    2
}
fn storage_size() -> Quantity {
    Quantity("10Gi".to_string())
}
fn ttl() -> i32 {
    30
}
fn loop_wait() -> i32 {
    10
}
fn retry_timeout() -> i32 {
    10
}
fn failsafe_mode() -> bool {
    true
}

pub(crate) fn resources(
    cpu: &str,
    memory_request: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q(cpu)),
            ("memory".to_string(), q(memory_request)),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q(memory_limit))])),
        ..Default::default()
    }
}

fn instance_resources() -> ResourceRequirements {
    resources("250m", "512Mi", "512Mi")
}
