//! The Spilo container's environment: Spilo turns it into Patroni's config.
//! Names and meanings follow Spilo's ENVIRONMENT.rst.

use super::meta::{Owner, ROLE_LABEL, SCOPE_LABEL, SPILO_LABEL};
use super::system_secrets;
use crate::secrets::{ADMIN_USER, KEY_PASSWORD, REPLICATION_USER, SUPERUSER};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};
use serde_json::json;

/// Where the data volume is mounted; PGROOT is a directory inside it so
/// the volume's lost+found does not sit in the data directory.
pub const PGDATA_MOUNT: &str = "/home/postgres/pgdata";
pub const TLS_MOUNT: &str = "/tls";
pub const TLS_CA_MOUNT: &str = "/tlsca";

pub fn env(owner: &Owner) -> Vec<EnvVar> {
    let spec = &owner.cluster.spec;
    let mut env = vec![
        value("SCOPE", &owner.name),
        value("PGROOT", &format!("{PGDATA_MOUNT}/pgroot")),
        field("POD_IP", "status.podIP"),
        field("POD_NAMESPACE", "metadata.namespace"),
        value("PGVERSION", &spec.postgres_version.to_string()),
        // Patroni on the Kubernetes DCS: leader lock and config in
        // Endpoints (`<scope>`, `<scope>-config`), roles as pod labels.
        value("DCS_ENABLE_KUBERNETES_API", "true"),
        value("KUBERNETES_SCOPE_LABEL", SCOPE_LABEL),
        value("KUBERNETES_ROLE_LABEL", ROLE_LABEL),
        value(
            "KUBERNETES_LABELS",
            &json!({ SPILO_LABEL.0: SPILO_LABEL.1 }).to_string(),
        ),
        value("PGUSER_SUPERUSER", SUPERUSER),
        secret(
            "PGPASSWORD_SUPERUSER",
            system_secrets::name(owner, SUPERUSER),
        ),
        value("PGUSER_STANDBY", REPLICATION_USER),
        secret(
            "PGPASSWORD_STANDBY",
            system_secrets::name(owner, REPLICATION_USER),
        ),
        value("PGUSER_ADMIN", ADMIN_USER),
        secret("PGPASSWORD_ADMIN", system_secrets::name(owner, ADMIN_USER)),
        value("SPILO_CONFIGURATION", &spilo_configuration(owner)),
    ];
    // Always a certificate: the manifest's, else the one the controller
    // issued. Spilo's own self-signed one would leave clients nothing to
    // verify against.
    let tls = owner.tls();
    env.push(value(
        "SSL_CERTIFICATE_FILE",
        &format!("{TLS_MOUNT}/tls.crt"),
    ));
    env.push(value(
        "SSL_PRIVATE_KEY_FILE",
        &format!("{TLS_MOUNT}/tls.key"),
    ));
    if tls.ca_secret_name.is_some() {
        env.push(value("SSL_CA_FILE", &format!("{TLS_CA_MOUNT}/ca.crt")));
    }
    env
}

/// Spilo merges this JSON over the Patroni config it generates. The
/// `bootstrap.dcs` part seeds the DCS when the cluster is first created;
/// later changes have to go through Patroni's `PATCH /config` (reconcile).
pub fn spilo_configuration(owner: &Owner) -> String {
    let spec = &owner.cluster.spec;
    // Sorted keys: the same text whatever serde_json's features (yaml.rs).
    let config = json!({
        "bootstrap": {
            "dcs": {
                "ttl": spec.patroni.ttl,
                "loop_wait": spec.patroni.loop_wait,
                "retry_timeout": spec.patroni.retry_timeout,
                "postgresql": { "parameters": spec.postgresql.parameters },
            }
        }
    });
    crate::yaml::canonical(&config).to_string()
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: path.into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Passwords come from Secrets by reference, never as literal values, so
/// they do not show in the StatefulSet.
fn secret(name: &str, secret: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret,
                key: KEY_PASSWORD.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
