//! The instances: one StatefulSet of pods running the instance image
//! (deploy/images/instance) with the rendered patroni.yml. Updates are `OnDelete`
//! because only the rollout knows the safe order (replicas first, then a
//! switchover, then the old primary); Kubernetes' rolling update would take
//! the highest ordinal first whatever its role.

use super::instance_env;
use super::meta::{Owner, PATRONI_PORT, POSTGRES_PORT};
use super::patroni_config::{self, CONFIG_DIR, PGDATA_MOUNT, TLS_CA_MOUNT, TLS_MOUNT};
use super::{monitoring, pgbackrest, rbac, services};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The instance image's `postgres` user and group (Spilo's numbers, so a
/// volume a Spilo pod wrote stays usable); fsGroup makes the data volume
/// and the mounted key files theirs.
const POSTGRES_UID: i64 = 101;
const POSTGRES_GID: i64 = 103;
/// The pod template's annotation with the SHA-256 of patroni.yml: a changed
/// file makes a new revision, which the rollout applies member by member.
pub const PATRONI_CONFIG_HASH_ANNOTATION: &str = "pgwolf.io/patroni-config-hash";
/// The preStop hook waits at most this long while the pod is the primary,
/// for the controller's switchover (deploy/images/instance/prestop.sh).
const PRESTOP_PRIMARY_WAIT_SECONDS: u32 = 60;
/// Patroni needs time to stop PostgreSQL cleanly and hand the leader lock
/// over; a SIGKILL mid-checkpoint only costs a longer recovery, but costs it.
const TERMINATION_GRACE_SECONDS: i64 = 300;

pub fn statefulset(owner: &Owner, patroni_config_hash: String) -> StatefulSet {
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
                    annotations: Some(BTreeMap::from([(
                        PATRONI_CONFIG_HASH_ANNOTATION.to_string(),
                        patroni_config_hash,
                    )])),
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
        mount("patroni", CONFIG_DIR),
    ];
    let mut volumes = vec![
        Volume {
            name: "dshm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "patroni".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: patroni_config::config_map_name(owner),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let tls = owner.tls();
    mounts.push(mount("tls", TLS_MOUNT));
    volumes.push(secret_volume("tls", &tls.secret_name));
    if let Some(ca) = &tls.ca_secret_name {
        mounts.push(mount("tls-ca", TLS_CA_MOUNT));
        volumes.push(secret_volume("tls-ca", ca));
    }
    let mut env = instance_env::env(owner);
    if let Some(backups) = pgbackrest::backups(owner) {
        let (v, m) = pgbackrest::volumes(owner, backups);
        volumes.extend(v);
        mounts.extend(m);
        env.extend(pgbackrest::env(backups));
    }
    let mut containers = vec![Container {
        name: "postgres".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![
            container_port("postgresql", POSTGRES_PORT),
            container_port("patroni", PATRONI_PORT),
        ]),
        env: Some(env),
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
        // Patroni answers 503 on /liveness once its HA loop has not run
        // for ttl seconds (a hung Patroni keeps its leader key and so
        // the cluster without a working primary): restart it then.
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/liveness".into()),
                port: IntOrString::Int(PATRONI_PORT),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(30),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        // A deleted primary waits for the controller's switchover (the
        // pooler paused) instead of stopping into a failover.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "/usr/local/bin/instance-prestop".into(),
                        PRESTOP_PRIMARY_WAIT_SECONDS.to_string(),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }];
    if let Some(monitoring) = monitoring::exporter(owner) {
        containers.push(monitoring::container(owner, monitoring));
        volumes.push(monitoring::volume(owner));
    }
    PodSpec {
        service_account_name: Some(rbac::patroni_name(owner)),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(POSTGRES_UID),
            run_as_group: Some(POSTGRES_GID),
            run_as_non_root: Some(true),
            fs_group: Some(POSTGRES_GID),
            ..Default::default()
        }),
        affinity: Some(spread_over_nodes(owner)),
        containers,
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
