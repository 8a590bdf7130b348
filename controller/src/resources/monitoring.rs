//! `spec.monitoring`: the postgres_exporter sidecar of each instance, its
//! query file, and the login it uses.

use super::meta::{Owner, POSTGRES_PORT};
use super::{statefulset::container_port, system_secrets};
use crate::api::MonitoringSpec;
use crate::secrets::{KEY_PASSWORD, MONITOR_USER};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HTTPGetAction, Probe,
    SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

pub const EXPORTER_PORT: i32 = 9187;
const QUERIES_FILE: &str = "queries.yaml";
const QUERIES_DIR: &str = "/etc/pgwolf/monitoring";
/// The queries every instance's exporter runs: the same file the
/// monitoring test runs against a real exporter (deploy/monitoring/).
const QUERIES: &str = include_str!("../../../deploy/monitoring/postgres-exporter/queries.yaml");

/// The exporter's settings when it runs: `spec.monitoring` with
/// `exporter` on.
pub fn exporter<'a>(owner: &Owner<'a>) -> Option<&'a MonitoringSpec> {
    owner
        .cluster
        .spec
        .monitoring
        .as_ref()
        .filter(|m| m.exporter)
}

pub fn config_map_name(owner: &Owner) -> String {
    owner.child("monitoring")
}

pub fn config_map(owner: &Owner) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(config_map_name(owner), owner.labels("postgres")),
        data: Some(BTreeMap::from([(
            QUERIES_FILE.to_string(),
            QUERIES.to_string(),
        )])),
        ..Default::default()
    }
}

/// The sidecar: Debian's prometheus-postgres-exporter from the instance
/// image, logging in over the pod's loopback (pg_hba: SCRAM from
/// 127.0.0.1) as the pg_monitor role, its password from its Secret.
pub fn container(owner: &Owner, spec: &MonitoringSpec) -> Container {
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    Container {
        name: "exporter".into(),
        image: Some(owner.cluster.spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["prometheus-postgres-exporter".into()]),
        args: Some(vec![
            format!("--web.listen-address=:{EXPORTER_PORT}"),
            format!("--extend.query-path={QUERIES_DIR}/{QUERIES_FILE}"),
        ]),
        env: Some(vec![
            env(
                "DATA_SOURCE_URI",
                &format!("127.0.0.1:{POSTGRES_PORT}/postgres?sslmode=disable"),
            ),
            env("DATA_SOURCE_USER", MONITOR_USER),
            EnvVar {
                name: "DATA_SOURCE_PASS".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: system_secrets::name(owner, MONITOR_USER),
                        key: KEY_PASSWORD.into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ports: Some(vec![container_port("exporter", EXPORTER_PORT)]),
        resources: Some(spec.resources.clone()),
        // /metrics answers (with pg_up 0) while PostgreSQL is down: the
        // probe restarts only an exporter that hangs.
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/metrics".into()),
                port: IntOrString::Int(EXPORTER_PORT),
                ..Default::default()
            }),
            period_seconds: Some(30),
            timeout_seconds: Some(10),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "monitoring".into(),
            mount_path: QUERIES_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

pub fn volume(owner: &Owner) -> Volume {
    Volume {
        name: "monitoring".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(owner),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{desired, test_cluster, test_credentials, Child};
    use crate::postgres::roles;

    fn monitored() -> crate::api::PostgresCluster {
        let mut c = test_cluster("main");
        c.spec.monitoring = Some(Default::default());
        c
    }

    #[test]
    fn the_exporter_runs_beside_each_instance_with_its_own_login() {
        let c = monitored();
        let creds = test_credentials(&c);
        let children = desired(&c, &creds).unwrap();
        let sts = children
            .iter()
            .find_map(|o| match o {
                Child::StatefulSet(s) => Some(s),
                _ => None,
            })
            .unwrap();
        let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let exporter = pod
            .containers
            .iter()
            .find(|c| c.name == "exporter")
            .unwrap();
        assert_eq!(
            exporter.image, pod.containers[0].image,
            "the instance image"
        );
        let env = exporter.env.as_ref().unwrap();
        let pass = env.iter().find(|e| e.name == "DATA_SOURCE_PASS").unwrap();
        let key = pass
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(key.name, "main-pgwolf-monitor-credentials");
        let password = &creds.monitor.as_ref().unwrap().password;
        assert!(env.iter().all(|e| e.value.as_ref() != Some(password)));
        assert!(pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == "monitoring"));
        let named = |kind: &str, name: &str| {
            children
                .iter()
                .any(|o| o.kind() == kind && o.metadata().name.as_deref() == Some(name))
        };
        assert!(named("Secret", "main-pgwolf-monitor-credentials"));
        assert!(named("ConfigMap", "main-monitoring"));

        // The role: pg_monitor and nothing else.
        let (users, managed) = roles::managed(&c.spec, &creds);
        let steps = roles::plan(&users, &managed, &Default::default());
        let summaries: Vec<&str> = steps.iter().map(|s| s.summary.as_str()).collect();
        assert!(
            summaries.contains(&"GRANT \"pg_monitor\" TO \"pgwolf_monitor\""),
            "{summaries:?}"
        );
        assert!(summaries.iter().any(|s| s.starts_with(
            "CREATE ROLE \"pgwolf_monitor\" LOGIN NOCREATEDB NOCREATEROLE NOREPLICATION"
        )));
    }

    #[test]
    fn without_monitoring_nothing_of_it_is_rendered() {
        let c = test_cluster("main");
        let children = desired(&c, &test_credentials(&c)).unwrap();
        assert!(children.iter().all(|o| {
            let name = o.metadata().name.clone().unwrap_or_default();
            !name.contains("monitor")
        }));
        let (users, _) = roles::managed(&c.spec, &test_credentials(&c));
        assert!(users.iter().all(|u| u.name != "pgwolf_monitor"));
    }
}
