//! What the integration tests share: the example manifests, rendered the
//! way the controller would once the API server has stored them.

use pgwolf_controller::api::PostgresCluster;
use pgwolf_controller::render;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// deploy/examples/cluster-*.yaml, sorted.
#[allow(dead_code)]
pub fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("cluster-") && name.ends_with(".yaml")
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no deploy/examples/cluster-*.yaml");
    out
}

/// The example as the API server returns it: with a uid (so children get
/// owner references) and a namespace. Credentials come from a fixed seed so
/// the output is stable.
// Each test binary compiles this module; not every one renders.
#[allow(dead_code)]
pub fn render_example(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cluster: PostgresCluster = render::parse_cluster(&text).unwrap();
    cluster.metadata.uid = Some("00000000-0000-4000-8000-000000000001".into());
    cluster
        .metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    render::render(&cluster, &mut StdRng::seed_from_u64(8)).unwrap()
}

/// deploy/examples/apps/*.yaml (applications bound to an example
/// cluster), sorted.
#[allow(dead_code)]
pub fn app_examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/examples/apps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no deploy/examples/apps/*.yaml");
    out
}

/// The objects of a multi-document YAML file, as JSON values.
#[allow(dead_code)]
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("\n---\n")
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .map(|d| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
        .collect()
}
