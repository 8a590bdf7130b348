//! Secrets of the roles the cluster itself needs: Patroni's superuser and
//! replication user, Spilo's admin role, the pooler's admin login.

use super::meta::Owner;
use crate::secrets::{Credential, KEY_PASSWORD, KEY_VERIFIER};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

/// `<cluster>-<role>-credentials` (`_` as `-`, which object names need),
/// a name no declared user's default Secret (`<cluster>-<user>`) can take
/// since declared names cannot end with `_credentials`.
pub fn name(owner: &Owner, user: &str) -> String {
    owner.child(&format!("{}-credentials", user.replace('_', "-")))
}

pub fn secret(owner: &Owner, credential: &Credential) -> Secret {
    Secret {
        metadata: owner.meta(name(owner, &credential.user), owner.labels("credentials")),
        type_: Some("Opaque".into()),
        data: Some(data([
            ("username", credential.user.as_str()),
            (KEY_PASSWORD, credential.password.as_str()),
            (KEY_VERIFIER, credential.verifier.as_str()),
        ])),
        ..Default::default()
    }
}

/// `data` rather than `stringData`: server-side apply tracks `data`, while
/// `stringData` is write-only and would show as a change on every apply.
pub(super) fn data<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, ByteString> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}
