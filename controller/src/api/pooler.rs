//! `spec.pooler`: the pgwolf Deployment in front of the cluster.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pooler image; the tag follows the controller's version so one release
/// deploys the pgwolf it was tested with.
pub const DEFAULT_POOLER_IMAGE: &str = concat!("pgwolf:", env!("CARGO_PKG_VERSION"));

/// The pgwolf pooler: a Deployment that follows the primary through
/// Patroni's leader Endpoints and routes `<db><readOnlyAlias>` to replicas.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerSpec {
    /// Pooler pods. Default 2, so one can restart while the other serves.
    #[serde(default = "replicas")]
    #[schemars(range(min = 1, max = 64))]
    pub replicas: i32,
    /// How long a client keeps a server connection: `session`,
    /// `transaction` or `statement`. Default `transaction`.
    #[serde(default)]
    pub mode: PoolMode,
    /// Server connections per (database, user) pool, per pooler pod.
    /// Default 20.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub default_pool_size: i32,
    /// Client connections each pooler pod accepts at once. Default 10000.
    #[serde(default = "max_client_conn")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_client_conn: i32,
    /// CPU and memory of each pooler container. Default requests 100m CPU
    /// and 64Mi memory, limit 256Mi memory.
    #[serde(default = "pooler_resources")]
    pub resources: ResourceRequirements,
    /// Suffix of the read-only alias of every database: a client connecting
    /// to `<db><readOnlyAlias>` is served by replicas (the primary when none
    /// is healthy). Default `""`: no alias, every connection goes to the
    /// primary.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[a-z0-9_]{0,20}$"))]
    pub read_only_alias: String,
    /// Container image of the pooler. Default `pgwolf:<controller version>`.
    #[serde(default = "image")]
    #[schemars(length(min = 1))]
    pub image: String,
}

/// pgwolf's pool modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Until the client disconnects.
    Session,
    /// Until the transaction ends.
    #[default]
    Transaction,
    /// Until the statement ends; multi-statement transactions are refused.
    Statement,
}

impl From<PoolMode> for pgwolf::config::PoolMode {
    fn from(m: PoolMode) -> Self {
        match m {
            PoolMode::Session => pgwolf::config::PoolMode::Session,
            PoolMode::Transaction => pgwolf::config::PoolMode::Transaction,
            PoolMode::Statement => pgwolf::config::PoolMode::Statement,
        }
    }
}

fn replicas() -> i32 {
    2
}
fn default_pool_size() -> i32 {
    20
}
fn max_client_conn() -> i32 {
    10_000
}
fn image() -> String {
    DEFAULT_POOLER_IMAGE.to_string()
}
fn pooler_resources() -> ResourceRequirements {
    super::cluster::resources("100m", "64Mi", "256Mi")
}
