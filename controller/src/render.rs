//! Offline rendering, like `helm template`: a manifest in, every object the
//! controller would create out, as multi-document YAML.

use crate::api::PostgresCluster;
use crate::resources::{self, Child};
use rand::Rng;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the PostgresCluster manifest: {0}")]
    Parse(#[source] serde_saphyr::Error),
    #[error("the manifest is a {0}, not a pgwolf.io/v1alpha1 PostgresCluster")]
    NotACluster(String),
    #[error("the manifest has no metadata.name")]
    NoName,
    #[error(transparent)]
    Build(#[from] resources::Error),
    #[error("writing YAML: {0}")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// Parses one PostgresCluster manifest, applying the schema's defaults the
/// way the API server would (serde defaults are the same ones).
pub fn parse_cluster(yaml: &str) -> Result<PostgresCluster, Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    let head: Head = serde_saphyr::from_str(yaml).map_err(Error::Parse)?;
    if head.api_version != "pgwolf.io/v1alpha1" || head.kind != "PostgresCluster" {
        return Err(Error::NotACluster(format!(
            "{}/{}",
            head.api_version, head.kind
        )));
    }
    let cluster: PostgresCluster = serde_saphyr::from_str(yaml).map_err(Error::Parse)?;
    if cluster.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(Error::NoName);
    }
    Ok(cluster)
}

/// Every object for `cluster`, with fresh credentials from `rng` and
/// freshly issued certificates (offline there are no Secrets to read them
/// back from).
pub fn render<R: Rng>(cluster: &PostgresCluster, rng: &mut R) -> Result<String, Error> {
    let credentials = resources::credentials(cluster, |_| None, rng, crate::secrets::tls::today())?;
    to_yaml(&resources::desired(cluster, &credentials)?)
}

pub fn to_yaml(objects: &[Child]) -> Result<String, Error> {
    let objects: Vec<serde_json::Value> = objects.iter().map(crate::yaml::canonical).collect();
    serde_saphyr::to_string_multiple(&objects).map_err(Error::Yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_manifest_gets_the_schema_defaults() {
        let c = parse_cluster(
            "apiVersion: pgwolf.io/v1alpha1\nkind: PostgresCluster\nmetadata:\n  name: tiny\nspec: {}\n",
        )
        .unwrap();
        assert_eq!(c.spec.instances, 2);
        assert_eq!(c.spec.postgres_version, 15);
        assert_eq!(c.spec.image, crate::api::DEFAULT_IMAGE);
        assert_eq!(c.spec.patroni.ttl, 30);
        assert_eq!(c.spec.storage.size.0, "10Gi");
        assert!(c.spec.pooler.is_none());
    }

    #[test]
    fn other_kinds_and_nameless_manifests_are_refused() {
        let err =
            parse_cluster("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n").unwrap_err();
        assert!(err.to_string().contains("v1/Service"), "{err}");
        let err = parse_cluster(
            "apiVersion: pgwolf.io/v1alpha1\nkind: PostgresCluster\nmetadata: {}\nspec: {}\n",
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoName), "{err}");
    }
}
