//! The pooler's Deployment and Service. pgwolf finds the primary itself
//! (Kubernetes provider), so a switchover needs no Service change here.

use super::meta::{Owner, POOLER_HTTP_PORT, POOLER_PORT, POSTGRES_PORT};
use super::pooler_config::{
    auth_secret_name, config_map_name, AUTH_DIR, CLIENT_TLS_CERT, CLIENT_TLS_DIR, CLIENT_TLS_KEY,
    CONFIG_DIR, CONFIG_FILE, SERVER_CA_DIR, SERVER_CA_FILE,
};
use super::rbac;
use super::statefulset::container_port;
use crate::api::PoolerSpec;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, HTTPGetAction, KeyToPath, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// A hash of pgwolf.toml: a changed config rolls the pods (one at a time,
/// a new one ready first). Not of the auth file, which the running pooler
/// re-reads when the Secret's new version reaches the pod.
pub const CONFIG_HASH_ANNOTATION: &str = "pgwolf.io/config-hash";
/// The pgwolf image's user (deploy/images/pgwolf).
const POOLER_UID: i64 = 65532;

pub fn name(owner: &Owner) -> String {
    owner.child("pooler")
}

pub fn deployment(owner: &Owner, pooler: &PoolerSpec, config_hash: String) -> Deployment {
    let mut labels = owner.labels("pooler");
    labels.extend(owner.pooler_selector());
    Deployment {
        metadata: owner.meta(name(owner), owner.labels("pooler")),
        spec: Some(DeploymentSpec {
            replicas: Some(pooler.replicas),
            selector: LabelSelector {
                match_labels: Some(owner.pooler_selector()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash,
                    )])),
                    ..Default::default()
                }),
                spec: Some(pod_spec(owner, pooler)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(owner: &Owner, pooler: &PoolerSpec) -> PodSpec {
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(POOLER_HTTP_PORT),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    // Only `keys` of the Secret when given: the pooler never sees the
    // instances' other files (the CA's key is in no Secret it mounts).
    let secret_volume = |name: &str, secret: String, keys: &[&str]| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(0o440),
            items: (!keys.is_empty()).then(|| {
                keys.iter()
                    .map(|&key| KeyToPath {
                        key: key.into(),
                        path: key.into(),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut mounts = vec![mount("config", CONFIG_DIR), mount("auth", AUTH_DIR)];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(owner),
                ..Default::default()
            }),
            ..Default::default()
        },
        secret_volume("auth", auth_secret_name(owner), &[]),
    ];
    let tls = owner.tls();
    if let Some(ca_secret) = tls.ca_secret_name {
        mounts.push(mount("server-ca", SERVER_CA_DIR));
        volumes.push(secret_volume("server-ca", ca_secret, &[SERVER_CA_FILE]));
    }
    // The certificate pgwolf shows its clients: the instances' own (its
    // names include the pooler Service's), only the certificate and key.
    mounts.push(mount("tls", CLIENT_TLS_DIR));
    volumes.push(secret_volume(
        "tls",
        tls.secret_name,
        &[CLIENT_TLS_CERT, CLIENT_TLS_KEY],
    ));
    PodSpec {
        service_account_name: Some(rbac::pooler_name(owner)),
        // Past pgwolf's default shutdown_timeout (30s), so transactions in
        // flight can finish before the kubelet kills it.
        termination_grace_period_seconds: Some(45),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(POOLER_UID),
            run_as_group: Some(POOLER_UID),
            fs_group: Some(POOLER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![Container {
            name: "pgwolf".into(),
            image: Some(pooler.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            args: Some(
                [
                    "run",
                    "--config",
                    &format!("{CONFIG_DIR}/{CONFIG_FILE}"),
                    "--log-format",
                    "json",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ports: Some(vec![
                container_port("postgres", POOLER_PORT),
                container_port("http", POOLER_HTTP_PORT),
            ]),
            resources: Some(pooler.resources.clone()),
            // Ready only while a primary is known for every database.
            readiness_probe: Some(probe("/readyz")),
            liveness_probe: Some(probe("/healthz")),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volume_mounts: Some(mounts),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// `<cluster>-pooler`, on PostgreSQL's usual port so a client switches
/// between direct and pooled connections by host name alone.
pub fn service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(name(owner), owner.labels("pooler")),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(owner.pooler_selector()),
            ports: Some(vec![ServicePort {
                name: Some("postgres".into()),
                port: POSTGRES_PORT,
                target_port: Some(IntOrString::String("postgres".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
