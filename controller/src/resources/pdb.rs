//! The PodDisruptionBudget: a node drain takes one instance at a time, so
//! Patroni always has a member to fail over to.

use super::meta::Owner;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub fn pdb(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(owner.name.clone(), owner.labels("postgres")),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.member_selector()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
