//! Identities and permissions. Patroni's Kubernetes DCS keeps the leader
//! lock and cluster config in Endpoints, labels its pods with their role and
//! creates the `<cluster>-config` Service if it is missing. The pooler only
//! reads: the leader Endpoints (by name) and the member Pods.

use super::meta::Owner;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

/// The instances' ServiceAccount, Role and RoleBinding name.
pub fn patroni_name(owner: &Owner) -> String {
    owner.name.clone()
}

/// The pooler's ServiceAccount, Role and RoleBinding name.
pub fn pooler_name(owner: &Owner) -> String {
    owner.child("pooler")
}

pub fn patroni(owner: &Owner) -> (ServiceAccount, Role, RoleBinding) {
    let rules = vec![
        rule(
            "endpoints",
            &[
                "create",
                "get",
                "list",
                "watch",
                "patch",
                "update",
                "delete",
                "deletecollection",
            ],
            None,
        ),
        rule("pods", &["get", "list", "watch", "patch", "update"], None),
        rule("services", &["create"], None),
    ];
    identity(owner, patroni_name(owner), "postgres", rules)
}

/// `resourceNames` limits list and watch too, because pgwolf watches the
/// leader Endpoints with a `metadata.name` field selector. Pods cannot be
/// limited by label in RBAC; they are the namespace's Pods, read-only.
pub fn pooler(owner: &Owner) -> (ServiceAccount, Role, RoleBinding) {
    let reads = ["get", "list", "watch"];
    let rules = vec![
        rule("endpoints", &reads, Some(vec![owner.name.clone()])),
        rule("pods", &reads, None),
    ];
    identity(owner, pooler_name(owner), "pooler", rules)
}

fn rule(resource: &str, verbs: &[&str], names: Option<Vec<String>>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        resource_names: names,
        ..Default::default()
    }
}

/// A ServiceAccount, a Role and the RoleBinding between them, one name.
fn identity(
    owner: &Owner,
    name: String,
    component: &str,
    rules: Vec<PolicyRule>,
) -> (ServiceAccount, Role, RoleBinding) {
    let meta = || owner.meta(name.clone(), owner.labels(component));
    let account = ServiceAccount {
        metadata: meta(),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.clone(),
            namespace: Some(owner.namespace.clone()),
            ..Default::default()
        }]),
    };
    (account, role, binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster;

    #[test]
    fn the_pooler_reads_only_its_clusters_endpoints_and_pods() {
        let c = test_cluster("main");
        let (_, role, binding) = pooler(&Owner::new(&c));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 2);
        for r in &rules {
            assert_eq!(r.verbs, ["get", "list", "watch"]);
        }
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["endpoints".to_string()][..])
        );
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["main".to_string()][..])
        );
        assert_eq!(
            rules[1].resources.as_deref(),
            Some(&["pods".to_string()][..])
        );
        assert_eq!(binding.role_ref.name, "main-pooler");
        assert_eq!(binding.subjects.unwrap()[0].name, "main-pooler");
    }
}
