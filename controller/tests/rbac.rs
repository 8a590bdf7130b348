//! deploy/controller/rbac.yaml gives the controller what it needs: every
//! verb it uses on every kind it applies, reads or watches, and every rule
//! of the Roles it creates (Kubernetes refuses to let it grant a
//! permission it does not hold itself).

mod support;

use serde_json::Value;

use support::documents;

/// (apiGroup, resource, verb) triples a rule grants.
fn grants(rules: &Value) -> Vec<(String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for rule in rules.as_array().unwrap() {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.push((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn controller_grants() -> Vec<(String, String, String)> {
    let text =
        std::fs::read_to_string(support::repo_root().join("deploy/controller/rbac.yaml")).unwrap();
    documents(&text)
        .into_iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| grants(&d["rules"]))
        .collect()
}

fn has(all: &[(String, String, String)], group: &str, resource: &str, verb: &str) -> bool {
    all.iter()
        .any(|(g, r, v)| g == group && r == resource && v == verb)
}

#[test]
fn the_controller_may_grant_the_roles_it_creates() {
    let mine = controller_grants();
    let mut checked = 0;
    for example in support::examples() {
        for doc in documents(&support::render_example(&example)) {
            if doc["kind"] != "Role" {
                continue;
            }
            for (g, r, v) in grants(&doc["rules"]) {
                assert!(
                    has(&mine, &g, &r, &v),
                    "rbac.yaml lacks {v} on {g}/{r}, which Role {} grants",
                    doc["metadata"]["name"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "{checked} grants checked");
}

#[test]
fn the_controller_may_do_what_run_does() {
    let mine = controller_grants();
    // Every child kind: applied (patch), read (get), watched (list, watch).
    let children = [
        ("", "serviceaccounts"),
        ("", "secrets"),
        ("", "configmaps"),
        ("", "services"),
        ("apps", "statefulsets"),
        ("apps", "deployments"),
        ("policy", "poddisruptionbudgets"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ];
    for (g, r) in children {
        for v in ["get", "list", "watch", "patch"] {
            assert!(has(&mine, g, r, v), "{v} on {g}/{r}");
        }
    }
    for v in ["get", "list", "watch"] {
        assert!(has(&mine, "pgwolf.io", "postgresclusters", v), "{v}");
    }
    assert!(has(&mine, "pgwolf.io", "postgresclusters/status", "patch"));
    assert!(has(&mine, "", "endpoints", "get"), "the leader Endpoints");
    // The rollout lists instance and pooler pods and recreates instances;
    // deleted instance pods and cordoned nodes (drains) are watched, and a
    // pod's node read, so a primary leaves them first.
    for v in ["list", "watch", "delete"] {
        assert!(has(&mine, "", "pods", v), "{v} pods");
    }
    for v in ["get", "list", "watch"] {
        assert!(has(&mine, "", "nodes", v), "{v} nodes");
    }
    for v in ["get", "create", "update"] {
        assert!(has(&mine, "coordination.k8s.io", "leases", v), "{v} leases");
    }
    assert!(has(&mine, "events.k8s.io", "events", "create"));
    // spec.monitoring.podMonitor: applied (server-side apply is a patch).
    for v in ["get", "patch"] {
        assert!(
            has(&mine, "monitoring.coreos.com", "podmonitors", v),
            "{v} podmonitors"
        );
    }
}
