//! The cluster's Services. The primary one has no selector: Patroni writes
//! the leader's address into the same-named Endpoints, so the Service follows
//! a switchover as soon as Patroni records it, not when a label changes.

use super::meta::{Owner, PATRONI_PORT, POSTGRES_PORT, ROLE_LABEL};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `<cluster>`: the primary. The port name must match the one Patroni puts
/// in the Endpoints (`postgresql`).
pub fn primary(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(owner.name.clone(), owner.labels("postgres")),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![port("postgresql", POSTGRES_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<cluster>-replicas`: every streaming replica, by Patroni's role label.
pub fn replicas(owner: &Owner) -> Service {
    let mut selector = owner.member_selector();
    selector.insert(ROLE_LABEL.into(), "replica".into());
    Service {
        metadata: owner.meta(owner.child("replicas"), owner.labels("postgres")),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![port("postgresql", POSTGRES_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<cluster>-pods`: the StatefulSet's governing Service, so each member has
/// a stable DNS name. Not-ready pods are published because a replica must be
/// reachable while it catches up.
pub fn headless(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(headless_name(owner), owner.labels("postgres")),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(owner.member_selector()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                port("postgresql", POSTGRES_PORT),
                port("patroni", PATRONI_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn headless_name(owner: &Owner) -> String {
    owner.child("pods")
}

/// `<cluster>-config`: Patroni keeps the cluster's dynamic configuration in
/// the same-named Endpoints; a Service without selector keeps the endpoints
/// controller away from it. Patroni would create it too, but then without an
/// owner reference.
pub fn config(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(owner.child("config"), owner.labels("postgres")),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}
