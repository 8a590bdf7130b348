//! The Secrets of the certificates the controller issues (see
//! [`crate::secrets::tls`]): `<cluster>-tls`, mounted by the instances and
//! the pooler, and `<cluster>-ca`, which holds the CA's key and is mounted
//! by nothing.

use super::meta::Owner;
use super::services;
use super::system_secrets::data;
use crate::secrets::tls::{Found, IssuedTls};
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

/// Which host names the server certificate was made for, so a change of
/// them (not of anything else) remakes it.
pub const NAMES_ANNOTATION: &str = "pgwolf.io/tls-names";

pub fn ca_secret_name(owner: &Owner) -> String {
    owner.child("ca")
}

pub fn server_secret_name(owner: &Owner) -> String {
    owner.child("tls")
}

/// Every name a client or a replica dials: the primary, replicas and
/// pooler Services in each form the cluster DNS resolves (the pooler's
/// whether or not one is declared, so adding one later remakes nothing),
/// and each pod through the headless Service
/// (`<pod>.<cluster>-pods.<ns>.svc`). Assumes the cluster domain
/// `cluster.local`, Kubernetes' default.
pub fn host_names(owner: &Owner) -> Vec<String> {
    let ns = &owner.namespace;
    let mut names = Vec::new();
    for service in [
        owner.name.clone(),
        owner.child("replicas"),
        super::pooler::name(owner),
    ] {
        names.extend([
            service.clone(),
            format!("{service}.{ns}"),
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.cluster.local"),
        ]);
    }
    let pods = services::headless_name(owner);
    names.extend([
        format!("*.{pods}.{ns}.svc"),
        format!("*.{pods}.{ns}.svc.cluster.local"),
    ]);
    names
}

/// `kubernetes.io/tls`: `tls.crt`, `tls.key`, and the CA as `ca.crt`.
pub fn server_secret(owner: &Owner, tls: &IssuedTls) -> Secret {
    let mut metadata = owner.meta(server_secret_name(owner), owner.labels("tls"));
    metadata.annotations = Some(BTreeMap::from([(
        NAMES_ANNOTATION.to_string(),
        tls.names.join(","),
    )]));
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data([
            ("tls.crt", tls.cert.as_str()),
            ("tls.key", tls.key.as_str()),
            ("ca.crt", tls.ca_cert.as_str()),
        ])),
        ..Default::default()
    }
}

pub fn ca_secret(owner: &Owner, tls: &IssuedTls) -> Secret {
    Secret {
        metadata: owner.meta(ca_secret_name(owner), owner.labels("tls")),
        type_: Some("Opaque".into()),
        data: Some(data([
            ("ca.crt", tls.ca_cert.as_str()),
            ("ca.key", tls.ca_key.as_str()),
        ])),
        ..Default::default()
    }
}

/// What the two Secrets hold, as the issuer reads it back.
pub fn found(ca: Option<&Secret>, server: Option<&Secret>) -> Found {
    let text = |s: Option<&Secret>, key: &str| {
        s.and_then(|s| s.data.as_ref()?.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Found {
        ca_cert: text(ca, "ca.crt"),
        ca_key: text(ca, "ca.key"),
        cert: text(server, "tls.crt"),
        key: text(server, "tls.key"),
        cert_ca: text(server, "ca.crt"),
        names: server
            .and_then(|s| s.metadata.annotations.as_ref()?.get(NAMES_ANNOTATION))
            .map(|n| n.split(',').map(str::to_string).collect()),
    }
}
