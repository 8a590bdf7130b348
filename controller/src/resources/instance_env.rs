//! The instance container's environment: what Patroni learns only when the
//! pod starts (its name, IP and namespace) and the passwords, which stay in
//! Secrets and out of the rendered patroni.yml. Patroni reads `PATRONI_*`
//! variables over its configuration file.

use super::meta::{Owner, PATRONI_PORT, POSTGRES_PORT};
use super::system_secrets;
use crate::secrets::{KEY_PASSWORD, REPLICATION_USER, SUPERUSER};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};

pub fn env(owner: &Owner) -> Vec<EnvVar> {
    vec![
        field("PATRONI_NAME", "metadata.name"),
        field("PATRONI_KUBERNETES_NAMESPACE", "metadata.namespace"),
        field("POD_IP", "status.podIP"),
        // `$(POD_IP)`: Kubernetes expands a variable defined above.
        value("PATRONI_KUBERNETES_POD_IP", "$(POD_IP)"),
        value(
            "PATRONI_RESTAPI_CONNECT_ADDRESS",
            &format!("$(POD_IP):{PATRONI_PORT}"),
        ),
        value(
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
            &format!("$(POD_IP):{POSTGRES_PORT}"),
        ),
        secret(
            "PATRONI_SUPERUSER_PASSWORD",
            system_secrets::name(owner, SUPERUSER),
        ),
        secret(
            "PATRONI_REPLICATION_PASSWORD",
            system_secrets::name(owner, REPLICATION_USER),
        ),
    ]
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
