//! PodDisruptionBudgets, two with disjoint pods (the eviction API refuses a
//! pod that more than one selects):
//! - `<cluster>`: the members that are not primary, one down at a time, so
//!   a drain never takes the last replica a failover could use while
//!   another is away.
//! - `<cluster>-primary`: the primary, none down. `kubectl drain` keeps
//!   retrying its eviction until the controller, which sees the node
//!   cordoned, has switched over with the pooler paused; the old primary's
//!   pod is then a replica and goes like one. A single instance's allows
//!   one down instead: its drain cannot avoid the outage and must not
//!   hang. (Always rendered, so scaling to one instance updates it: the
//!   controller does not delete children it stopped rendering.)

use super::meta::{Owner, ROLE_LABEL};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The role label's values on a primary: Patroni 3.0 writes `master`,
/// later releases `primary`.
const PRIMARY_ROLES: [&str; 2] = ["master", "primary"];

pub fn primary_name(owner: &Owner) -> String {
    owner.child("primary")
}

pub fn pdbs(owner: &Owner) -> Vec<PodDisruptionBudget> {
    let one = Some(IntOrString::Int(1));
    let primary = if owner.cluster.spec.instances > 1 {
        budget(owner, primary_name(owner), "In", None, one.clone())
    } else {
        budget(owner, primary_name(owner), "In", one.clone(), None)
    };
    vec![
        budget(owner, owner.name.clone(), "NotIn", one, None),
        primary,
    ]
}

fn budget(
    owner: &Owner,
    name: String,
    operator: &str,
    max_unavailable: Option<IntOrString>,
    min_available: Option<IntOrString>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(name, owner.labels("postgres")),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable,
            min_available,
            selector: Some(LabelSelector {
                match_labels: Some(owner.member_selector()),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: ROLE_LABEL.into(),
                    operator: operator.into(),
                    values: Some(PRIMARY_ROLES.iter().map(|r| r.to_string()).collect()),
                }]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster;

    #[test]
    fn the_primary_and_the_others_have_budgets_of_their_own() {
        let c = test_cluster("main");
        let all = pdbs(&Owner::new(&c));
        let names: Vec<_> = all
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["main", "main-primary"]);
        let spec = |i: usize| all[i].spec.clone().unwrap();
        assert_eq!(spec(0).max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec(1).min_available, Some(IntOrString::Int(1)));
        let expr = |i: usize| spec(i).selector.unwrap().match_expressions.unwrap()[0].clone();
        assert_eq!(expr(0).operator, "NotIn");
        assert_eq!(expr(1).operator, "In");
        assert_eq!(expr(0).values, expr(1).values, "disjoint: the same values");

        let mut single = c.clone();
        single.spec.instances = 1;
        let single = pdbs(&Owner::new(&single));
        let primary = single[1].spec.clone().unwrap();
        assert_eq!(
            (primary.min_available, primary.max_unavailable),
            (None, Some(IntOrString::Int(1))),
            "a single instance's drain must not hang"
        );
    }
}
