//! `spec.backups`: pgBackRest repositories and continuous WAL archiving.
//! Declaring any repository turns archiving on.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Backups with pgBackRest (docs/kubernetes.md, "Backups"): every
/// instance archives its WAL to each repository
/// (`archive_command = pgbackrest archive-push`), and replicas and rebuilt
/// members restore from a repository before they stream. Scheduled
/// backups are not rendered yet: take them with `pgbackrest backup` in
/// the primary's pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.repos.all(r, self.repos.exists_one(o, o.name == r.name))").message("backups.repos: each name once"))]
pub struct BackupsSpec {
    /// One to four repositories, `repo1` to `repo4` in pgBackRest's
    /// numbering. WAL goes to all of them; a backup goes to the one it
    /// names (`--repo`).
    #[schemars(length(min = 1, max = 4))]
    pub repos: Vec<RepoSpec>,
}

/// One pgBackRest repository: a volume or an S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.volume) != has(self.s3)").message("a repository is either a volume or s3, exactly one"))]
pub struct RepoSpec {
    /// `repo1` to `repo4`: the repository's index in pgBackRest's options
    /// (`repo1-path`, ...), fixed for its life.
    #[schemars(regex(pattern = r"^repo[1-4]$"))]
    pub name: String,
    /// A PersistentVolumeClaim `<cluster>-<name>` mounted at
    /// `/pgbackrest/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<RepoVolumeSpec>,
    /// An S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3RepoSpec>,
    /// The repository's path: in the bucket, default
    /// `/pgbackrest/<namespace>/<cluster>/<name>` (so clusters can share a
    /// bucket); on a volume, `/pgbackrest/<name>` always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^\s]*$"))]
    pub path: Option<String>,
    /// How many backups to keep.
    #[serde(default)]
    pub retention: RetentionSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoVolumeSpec {
    /// Requested size. Default `20Gi`.
    #[serde(default = "volume_size")]
    pub size: Quantity,
    /// StorageClass of the claim; unset for the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3RepoSpec {
    /// The endpoint's host (and `:port`), e.g. `s3.eu-west-1.amazonaws.com`
    /// or `minio.storage.svc:9000`. Always HTTPS.
    #[schemars(length(min = 1, max = 253))]
    pub endpoint: String,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// The bucket's region (any value for stores that ignore it).
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// `host` (`bucket.endpoint`, AWS's default) or `path`
    /// (`endpoint/bucket`, what MinIO and most self-hosted stores need).
    /// Default `host`.
    #[serde(default)]
    pub uri_style: UriStyle,
    /// Verify the endpoint's certificate. Default true; turn it off only
    /// for a test store.
    #[serde(default = "yes")]
    pub verify_tls: bool,
    /// A Secret with `key` (the access key ID) and `keySecret` (the
    /// secret access key), in the cluster's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// A Secret with `ca.crt`: the CA the endpoint's certificate is
    /// verified against, when not a public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_secret_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UriStyle {
    #[default]
    Host,
    Path,
}

/// pgBackRest's retention: expired backups, and the WAL only they needed,
/// are removed after each backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Full backups to keep (`count`), or days to keep them (`time`).
    /// Default 2.
    #[serde(default = "two")]
    #[schemars(range(min = 1, max = 9999))]
    pub full: i32,
    /// `count` or `time`. Default `count`.
    #[serde(default)]
    pub full_type: RetentionType,
    /// Differential backups to keep; unset: as many as the full ones keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9999))]
    pub differential: Option<i32>,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        RetentionSpec {
            full: two(),
            full_type: RetentionType::Count,
            differential: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RetentionType {
    #[default]
    Count,
    Time,
}

fn yes() -> bool {
    true
}

fn two() -> i32 {
    2
}

fn volume_size() -> Quantity {
    Quantity("20Gi".into())
}
