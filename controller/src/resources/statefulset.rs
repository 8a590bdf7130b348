//! The instances: one StatefulSet of Spilo pods. Updates are `OnDelete`
//! because only the rollout knows the safe order (replicas first, then a
//! switchover, then the old primary); Kubernetes' rolling update would take
//! the highest ordinal first whatever its role.

use super::meta::{Owner, PATRONI_PORT, POSTGRES_PORT};
use super::spilo_env::{self, PGDATA_MOUNT, TLS_CA_MOUNT, TLS_MOUNT};
use super::{rbac, services};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SecretVolumeSource, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The group of the `postgres` user in Spilo images, so the data volume is
/// writable by it.
const SPILO_FS_GROUP: i64 = 103;
/// Patroni needs time to stop PostgreSQL cleanly and hand the leader lock
/// over; a SIGKILL mid-checkpoint only costs a longer recovery, but costs it.
const TERMINATION_GRACE_SECONDS: i64 = 300;

pub fn statefulset(owner: &Owner) -> StatefulSet {
    let spec = &owner.cluster.spec;
    let mut pod_labels = owner.labels("postgres");
    pod_labels.extend(owner.member_selector());
    StatefulSet {
        metadata: owner.meta(owner.name.clone(), owner.labels("postgres")),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.instances),
            service_name: Some(services::headless_name(owner)),
            selector: LabelSelector {
                match_labels: Some(owner.member_selector()),
                ..Default::default()
            },
            // Patroni's initialize key in the DCS decides which member
            // bootstraps, so members may start together; ordered start
            // would let one stuck pod block all the others.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(pod_spec(owner)),
            },
            volume_claim_templates: Some(vec![claim(owner)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(owner: &Owner) -> PodSpec {
    let spec = &owner.cluster.spec;
    let mut mounts = vec![
        mount("pgdata", PGDATA_MOUNT),
        // PostgreSQL's shared memory; the container runtime's 64Mi /dev/shm
        // is too small for parallel queries.
        mount("dshm", "/dev/shm"),
    ];
    let mut volumes = vec![Volume {
        name: "dshm".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let tls = owner.tls();
    mounts.push(mount("tls", TLS_MOUNT));
    volumes.push(secret_volume("tls", &tls.secret_name));
    if let Some(ca) = &tls.ca_secret_name {
        mounts.push(mount("tls-ca", TLS_CA_MOUNT));
        volumes.push(secret_volume("tls-ca", ca));
    }
    PodSpec {
        service_account_name: Some(rbac::patroni_name(owner)),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            fs_group: Some(SPILO_FS_GROUP),
            ..Default::default()
        }),
        affinity: Some(spread_over_nodes(owner)),
        containers: vec![Container {
            name: "postgres".into(),
            image: Some(spec.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            ports: Some(vec![
                container_port("postgresql", POSTGRES_PORT),
                container_port("patroni", PATRONI_PORT),
            ]),
            env: Some(spilo_env::env(owner)),
            resources: Some(spec.resources.clone()),
            // Patroni answers 200 on /readiness once PostgreSQL runs and,
            // on a replica, streams; it is the API the rollout waits on too.
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/readiness".into()),
                    port: IntOrString::Int(PATRONI_PORT),
                    scheme: Some("HTTP".into()),
                    ..Default::default()
                }),
                initial_delay_seconds: Some(6),
                period_seconds: Some(10),
                timeout_seconds: Some(5),
                failure_threshold: Some(3),
                ..Default::default()
            }),
            volume_mounts: Some(mounts),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// Preferred, not required: a cluster on fewer nodes than instances still
/// starts.
fn spread_over_nodes(owner: &Owner) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(owner.member_selector()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim(owner: &Owner) -> PersistentVolumeClaim {
    let storage = &owner.cluster.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("pgdata".into()),
            labels: Some(owner.labels("postgres")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.0.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            // PostgreSQL refuses a key file others can read; fsGroup gives
            // the postgres group access.
            default_mode: Some(0o640),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}
