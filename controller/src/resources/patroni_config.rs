//! Patroni's configuration file for the instance image (`patroni.yml` in
//! the `<cluster>-patroni` ConfigMap, mounted at `/etc/patroni`). What a
//! pod learns only at start comes from its environment (`instance_env`):
//! its name, its IP as the connect addresses, its namespace, the passwords.
//!
//! `bootstrap.dcs` seeds the DCS when the cluster is first created; later
//! changes to the timing and `spec.postgresql.parameters` go through
//! Patroni's `PATCH /config` (rollout/config.rs). The rest is local to each
//! member and read at start: a change makes a new pod revision, and the
//! rollout restarts the members replicas first.

use super::meta::{Owner, PATRONI_PORT, POSTGRES_PORT, ROLE_LABEL, SCOPE_LABEL, SPILO_LABEL};
use crate::secrets::{REPLICATION_USER, SUPERUSER};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const CONFIG_DIR: &str = "/etc/patroni";
pub const CONFIG_FILE: &str = "patroni.yml";
/// The data volume. The path and `DATA_DIR` under it are Spilo's, so a
/// volume a Spilo image initialised runs unchanged on the instance image.
pub const PGDATA_MOUNT: &str = "/home/postgres/pgdata";
pub const DATA_DIR: &str = "/home/postgres/pgdata/pgroot/data";
/// The instances' certificate and key (`tls.crt`, `tls.key`) and the CA
/// clients and replicas verify against (`ca.crt`).
pub const TLS_MOUNT: &str = "/tls";
pub const TLS_CA_MOUNT: &str = "/tlsca";
pub const SOCKET_DIR: &str = "/var/run/postgresql";
/// Written by Patroni before each replica connection; the container's
/// only writable place besides the volume is /tmp.
pub const PGPASS: &str = "/tmp/pgpass";

pub fn config_map_name(owner: &Owner) -> String {
    owner.child("patroni")
}

pub fn config_map(owner: &Owner, yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(config_map_name(owner), owner.labels("postgres")),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), yaml)])),
        ..Default::default()
    }
}

/// `patroni.yml` as text: sorted keys, so the same spec renders the same
/// bytes (the pod template carries their hash).
pub fn yaml(owner: &Owner) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crate::yaml::canonical(&config(owner)))
}

/// Why the values that are not Patroni's defaults:
/// - Kubernetes DCS on Endpoints with Spilo's labels: the leader in the
///   `<cluster>` Endpoints, which the primary Service (no selector) and the
///   pooler's kubernetes provider read; roles as the `spilo-role` label,
///   which the replicas Service selects by.
/// - `failsafe_mode`: with the Kubernetes DCS, an API server that is down
///   for an upgrade would otherwise demote a healthy primary.
/// - `basebackup: checkpoint: fast`: a new replica does not wait for a
///   spread checkpoint on the primary (~95 s with the defaults here).
/// - `pg_hba`: passwords (SCRAM) everywhere; from outside the pod only over
///   TLS; peer on the socket, for `kubectl exec ... psql`.
/// - `watchdog: off`: pods have no /dev/watchdog.
/// - with `spec.backups`, pgBackRest's archive and restore commands
///   (`pgbackrest::patroni_postgresql`).
pub fn config(owner: &Owner) -> Value {
    let spec = &owner.cluster.spec;
    let tls = owner.tls();
    let mut parameters = json!({
        "ssl": "on",
        "ssl_cert_file": format!("{TLS_MOUNT}/tls.crt"),
        "ssl_key_file": format!("{TLS_MOUNT}/tls.key"),
        "unix_socket_directories": SOCKET_DIR,
    });
    if tls.ca_secret_name.is_some() {
        parameters["ssl_ca_file"] = json!(format!("{TLS_CA_MOUNT}/ca.crt"));
    }
    let mut config = json!({
        "scope": owner.name,
        "restapi": { "listen": format!("0.0.0.0:{PATRONI_PORT}") },
        "kubernetes": {
            "use_endpoints": true,
            "labels": { SPILO_LABEL.0: SPILO_LABEL.1 },
            "scope_label": SCOPE_LABEL,
            "role_label": ROLE_LABEL,
            "ports": [{ "name": "postgresql", "port": POSTGRES_PORT }],
        },
        "bootstrap": {
            "dcs": {
                "ttl": spec.patroni.ttl,
                "loop_wait": spec.patroni.loop_wait,
                "retry_timeout": spec.patroni.retry_timeout,
                "failsafe_mode": spec.patroni.failsafe_mode,
                "synchronous_mode": spec.patroni.synchronous_mode,
                "postgresql": {
                    "use_pg_rewind": true,
                    "use_slots": true,
                    "parameters": spec.postgresql.parameters,
                },
            },
            "initdb": [
                { "encoding": "UTF8" },
                { "locale": "C.UTF-8" },
                "data-checksums",
                { "auth-local": "peer" },
                { "auth-host": "scram-sha-256" },
            ],
        },
        "postgresql": {
            "listen": format!("0.0.0.0:{POSTGRES_PORT}"),
            "data_dir": DATA_DIR,
            "bin_dir": format!("/usr/lib/postgresql/{}/bin", spec.postgres_version),
            "pgpass": PGPASS,
            "authentication": {
                "superuser": { "username": SUPERUSER },
                "replication": { "username": REPLICATION_USER },
            },
            "basebackup": [{ "checkpoint": "fast" }],
            "parameters": parameters,
            "pg_hba": [
                "local all all peer",
                "host all all 127.0.0.1/32 scram-sha-256",
                "host all all ::1/128 scram-sha-256",
                format!("hostssl replication {REPLICATION_USER} all scram-sha-256"),
                "hostssl all all all scram-sha-256",
            ],
        },
        "watchdog": { "mode": "off" },
    });
    if super::pgbackrest::backups(owner).is_some() {
        crate::yaml::merge(
            &mut config["postgresql"],
            super::pgbackrest::patroni_postgresql(owner),
        );
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster;

    #[test]
    fn outside_the_pod_only_tls_is_accepted() {
        let c = test_cluster("main");
        let config = config(&Owner::new(&c));
        let hba: Vec<&str> = config["postgresql"]["pg_hba"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        for line in hba.iter().filter(|l| l.ends_with(" all scram-sha-256")) {
            assert!(line.starts_with("hostssl "), "{line}");
        }
        assert!(hba.iter().all(|l| !l.contains("trust")), "{hba:?}");
    }

    #[test]
    fn parameters_and_timing_seed_the_dcs() {
        let mut c = test_cluster("main");
        c.spec
            .postgresql
            .parameters
            .insert("work_mem".into(), "8MB".into());
        c.spec.patroni.ttl = 40;
        let config = config(&Owner::new(&c));
        let dcs = &config["bootstrap"]["dcs"];
        assert_eq!(dcs["postgresql"]["parameters"]["work_mem"], "8MB");
        assert_eq!(dcs["ttl"], 40);
        assert_eq!(dcs["failsafe_mode"], true);
        assert_eq!(config["scope"], "main");
        assert_eq!(
            config["postgresql"]["bin_dir"],
            format!("/usr/lib/postgresql/{}/bin", c.spec.postgres_version)
        );
    }

    #[test]
    fn the_yaml_is_the_same_for_the_same_spec() {
        let c = test_cluster("main");
        let a = yaml(&Owner::new(&c)).unwrap();
        assert_eq!(a, yaml(&Owner::new(&c.clone())).unwrap());
        assert!(a.contains("use_endpoints: true"), "{a}");
    }
}
