//! The `PostgresCluster` custom resource (group `pgwolf.io`, `v1alpha1`).
//!
//! Types only: every field's doc comment becomes its description in the
//! generated schema, and every default and bound lives on the field, so the
//! API server rejects a bad manifest before the controller sees it. Nothing
//! here talks to a cluster.

mod backups;
mod cluster;
mod monitoring;
mod pooler;
mod status;
mod users;

pub use backups::{
    BackupsSpec, RepoSpec, RepoVolumeSpec, RetentionSpec, RetentionType, S3RepoSpec, UriStyle,
};
pub use cluster::{
    PatroniSpec, PostgresCluster, PostgresClusterSpec, PostgresqlSpec, StorageSpec, TlsSpec,
    DEFAULT_IMAGE,
};
pub use monitoring::MonitoringSpec;
pub use pooler::{PoolMode, PoolerSpec, DEFAULT_POOLER_IMAGE};
pub use status::PostgresClusterStatus;
pub use users::{RoleOption, UserSpec, RESERVED_USERS};

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as `pgwolf-controller crd` prints it and
/// deploy/crd/postgresclusters.yaml holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crate::yaml::canonical(&PostgresCluster::crd()))
}
