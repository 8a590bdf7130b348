//! deploy/examples/apps/ use only what the controller makes for
//! deploy/examples/cluster-with-pooler.yaml: every Secret key they read,
//! every Secret they mount, the Role they bind. And the sidecar's pgwolf
//! config is one pgwolf accepts, following the same cluster as the
//! controller's own pooler.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Secrets the user creates: named in the example's own instructions.
const USER_MADE_SECRETS: [&str; 1] = ["keycloak-admin"];

struct Rendered {
    /// Secret name → its keys.
    secrets: BTreeMap<String, BTreeSet<String>>,
    roles: BTreeSet<String>,
    pooler_toml: String,
}

fn rendered_cluster() -> Rendered {
    let path = support::repo_root().join("deploy/examples/cluster-with-pooler.yaml");
    let docs = support::documents(&support::render_example(&path));
    let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind);
    let name = |d: &Value| d["metadata"]["name"].as_str().unwrap().to_string();
    let secrets = of_kind("Secret")
        .map(|d| {
            let keys = d["data"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (name(d), keys)
        })
        .collect();
    let roles = of_kind("Role").map(name).collect();
    let pooler_toml = of_kind("ConfigMap")
        .find(|d| d["data"]["pgwolf.toml"].is_string())
        .expect("the pooler's ConfigMap")["data"]["pgwolf.toml"]
        .as_str()
        .unwrap()
        .to_string();
    Rendered {
        secrets,
        roles,
        pooler_toml,
    }
}

/// Every value under `key` anywhere in `v`.
fn all<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == key {
                    out.push(child);
                }
                all(child, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| all(c, key, out)),
        _ => {}
    }
}

fn app_documents() -> Vec<(String, Value)> {
    support::app_examples()
        .iter()
        .flat_map(|f| {
            let file = f.file_name().unwrap().to_string_lossy().to_string();
            support::documents(&std::fs::read_to_string(f).unwrap())
                .into_iter()
                .map(move |d| (file.clone(), d))
        })
        .collect()
}

#[test]
fn the_applications_read_only_secrets_and_keys_the_controller_writes() {
    let cluster = rendered_cluster();
    let mut checked = 0;
    for (file, doc) in app_documents() {
        let mut refs = Vec::new();
        all(&doc, "secretKeyRef", &mut refs);
        for r in refs {
            let (name, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            if USER_MADE_SECRETS.contains(&name) {
                continue;
            }
            let keys = cluster
                .secrets
                .get(name)
                .unwrap_or_else(|| panic!("{file}: no Secret {name} is rendered"));
            assert!(
                keys.contains(key),
                "{file}: Secret {name} has no {key}: {keys:?}"
            );
            checked += 1;
        }
        let mut volumes = Vec::new();
        all(&doc, "secret", &mut volumes);
        for volume in volumes {
            let name = volume["secretName"].as_str().unwrap();
            let keys = cluster
                .secrets
                .get(name)
                .unwrap_or_else(|| panic!("{file}: mounts Secret {name}, which is not rendered"));
            for item in volume["items"].as_array().into_iter().flatten() {
                let key = item["key"].as_str().unwrap();
                assert!(keys.contains(key), "{file}: Secret {name} has no {key}");
                checked += 1;
            }
            checked += 1;
        }
        if doc["kind"] == "RoleBinding" {
            let role = doc["roleRef"]["name"].as_str().unwrap();
            assert!(cluster.roles.contains(role), "{file}: binds Role {role}");
            checked += 1;
        }
    }
    // keycloak.yaml: 3 keys; sidecar.yaml: 3 keys, 2 Secrets (one with a
    // key), 1 Role.
    assert_eq!(checked, 10);
}

#[test]
fn the_sidecar_config_is_valid_pgwolf_config_following_the_cluster_s_leader() {
    let cluster = rendered_cluster();
    let docs = app_documents();
    let config_map = docs
        .iter()
        .find(|(f, d)| f == "sidecar.yaml" && d["kind"] == "ConfigMap")
        .map(|(_, d)| d)
        .expect("the sidecar's ConfigMap");
    let text = config_map["data"]["pgwolf.toml"].as_str().unwrap();
    let path = std::path::Path::new("sidecar.yaml#pgwolf.toml");
    let sidecar =
        pgwolf::config::from_toml_str(text, path).expect("pgwolf parses the sidecar config");
    pgwolf::config::validate(&sidecar).expect("and validates it");

    let pooler = pgwolf::config::from_toml_str(&cluster.pooler_toml, path).unwrap();
    let (mine, theirs) = (&sidecar.clusters["main"], &pooler.clusters["main"]);
    assert_eq!(mine.provider, theirs.provider);
    assert_eq!(mine.namespace, theirs.namespace);
    assert_eq!(mine.endpoints, theirs.endpoints);
    assert_eq!(mine.pod_selector, theirs.pod_selector);
    assert_eq!(mine.role_label, theirs.role_label);
    assert_eq!(mine.port, theirs.port);
    assert_eq!(sidecar.server_tls_sslmode, pooler.server_tls_sslmode);
    assert_eq!(sidecar.server_tls_ca_file, pooler.server_tls_ca_file);
    assert_eq!(sidecar.auth_file, pooler.auth_file);
    assert_eq!(
        sidecar.databases.keys().collect::<Vec<_>>(),
        pooler.databases.keys().collect::<Vec<_>>()
    );
    // Only the pod's own containers may connect.
    assert!(sidecar.listen.iter().all(|l| l.starts_with("127.0.0.1:")));
}
