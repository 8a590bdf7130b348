//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side
//! with kube's `cel` feature the way the API server evaluates them on create
//! (after applying the schema's defaults) and update.

mod support;

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use pgwolf_controller::api::PostgresCluster;
use serde_json::{json, Value};

fn schema() -> Value {
    let crd = PostgresCluster::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn cluster(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "pgwolf.io/v1alpha1",
        "kind": "PostgresCluster",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The messages of the rules `object` breaks (an update when `old` is set).
fn broken(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn the_examples_and_an_empty_spec_pass() {
    for path in support::examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        let object: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            broken(&object, None),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
    }
    assert_eq!(
        broken(&cluster("tiny", json!({})), None),
        Vec::<String>::new()
    );
}

#[test]
fn patroni_timing_that_patroni_would_refuse_is_rejected() {
    let bad = cluster(
        "c",
        json!({"patroni": {"ttl": 10, "loopWait": 5, "retryTimeout": 5}}),
    );
    let errors = broken(&bad, None);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("loopWait + 2 * retryTimeout"),
        "{errors:?}"
    );
    let ok = cluster(
        "c",
        json!({"patroni": {"ttl": 20, "loopWait": 5, "retryTimeout": 5}}),
    );
    assert_eq!(broken(&ok, None), Vec::<String>::new());
}

#[test]
fn reserved_role_and_database_names_are_rejected() {
    for name in [
        "postgres",
        "standby",
        "admin",
        "pgwolf",
        "pg_monitor",
        "app_credentials",
    ] {
        let bad = cluster("c", json!({"users": [{"name": name}]}));
        let errors = broken(&bad, None);
        assert!(
            errors.len() == 1 && errors[0].contains("reserved"),
            "{name}: {errors:?}"
        );
    }
    for db in ["template0", "template1", "pgwolf", "pgbouncer"] {
        let bad = cluster(
            "c",
            json!({"users": [{"name": "app", "databases": ["app", db]}]}),
        );
        let errors = broken(&bad, None);
        assert!(
            errors.len() == 1 && errors[0].contains("reserved"),
            "{db}: {errors:?}"
        );
    }
    let ok = cluster(
        "c",
        json!({"users": [{"name": "postgres_app", "databases": ["postgres"]}]}),
    );
    assert_eq!(broken(&ok, None), Vec::<String>::new());
}

#[test]
fn cluster_names_longer_than_forty_characters_are_rejected() {
    let errors = broken(&cluster(&"a".repeat(41), json!({})), None);
    assert!(
        errors.len() == 1 && errors[0].contains("40 characters"),
        "{errors:?}"
    );
    assert_eq!(
        broken(&cluster(&"a".repeat(40), json!({})), None),
        Vec::<String>::new()
    );
}

#[test]
fn storage_is_fixed_once_created_while_instances_may_change() {
    let old = cluster("c", json!({"instances": 2, "storage": {"size": "10Gi"}}));
    let grown = cluster("c", json!({"instances": 2, "storage": {"size": "20Gi"}}));
    let errors = broken(&grown, Some(&old));
    assert!(
        errors.len() == 1 && errors[0].contains("storage"),
        "{errors:?}"
    );
    let scaled = cluster("c", json!({"instances": 3, "storage": {"size": "10Gi"}}));
    assert_eq!(broken(&scaled, Some(&old)), Vec::<String>::new());
}

#[test]
fn a_backup_repository_is_a_volume_or_s3_and_named_once() {
    let s3 = json!({
        "endpoint": "s3.example", "bucket": "pgb", "region": "eu",
        "credentialsSecret": "keys",
    });
    let ok = cluster(
        "main",
        json!({ "backups": { "repos": [
            { "name": "repo1", "volume": {} },
            { "name": "repo2", "s3": s3 },
        ] } }),
    );
    assert_eq!(broken(&ok, None), Vec::<String>::new());
    let both = cluster(
        "main",
        json!({ "backups": { "repos": [{ "name": "repo1", "volume": {}, "s3": s3 }] } }),
    );
    assert_eq!(
        broken(&both, None),
        ["a repository is either a volume or s3, exactly one"]
    );
    let neither = cluster(
        "main",
        json!({ "backups": { "repos": [{ "name": "repo1" }] } }),
    );
    assert_eq!(
        broken(&neither, None),
        ["a repository is either a volume or s3, exactly one"]
    );
    let twice = cluster(
        "main",
        json!({ "backups": { "repos": [
            { "name": "repo1", "volume": {} },
            { "name": "repo1", "s3": s3 },
        ] } }),
    );
    assert_eq!(broken(&twice, None), ["backups.repos: each name once"]);
}
