//! Each declared user's Secret: credentials and ready-made connection
//! strings, direct and (with a pooler) through pgwolf, the way PGO's
//! `<cluster>-pguser-<user>` Secrets look (`pooler-` instead of
//! `pgbouncer-`).

use super::meta::{Owner, POSTGRES_PORT};
use super::pooler;
use super::system_secrets::data;
use crate::api::UserSpec;
use crate::secrets::{Credential, KEY_PASSWORD, KEY_VERIFIER};
use k8s_openapi::api::core::v1::Secret;

/// The user's `secretName`, else `<cluster>-<name>` with `_` as `-` (a
/// Secret name is a DNS subdomain).
pub fn name(owner: &Owner, user: &UserSpec) -> String {
    user.secret_name
        .clone()
        .unwrap_or_else(|| owner.child(&user.name.replace('_', "-")))
}

pub fn secret(owner: &Owner, user: &UserSpec, credential: &Credential) -> Secret {
    let port = POSTGRES_PORT.to_string();
    let dbname = user.databases.first().map(String::as_str);
    let host = owner.service_host(&owner.name);
    let pooler_host = owner.service_host(&pooler::name(owner));
    let (uri, jdbc) = uris(&host, &port, dbname, credential);
    let (pooler_uri, pooler_jdbc) = uris(&pooler_host, &port, dbname, credential);
    let mut entries = vec![
        ("user", user.name.as_str()),
        (KEY_PASSWORD, credential.password.as_str()),
        (KEY_VERIFIER, credential.verifier.as_str()),
        ("host", &host),
        ("port", &port),
        ("uri", &uri),
        ("jdbc-uri", &jdbc),
    ];
    if let Some(db) = dbname {
        entries.push(("dbname", db));
    }
    if owner.cluster.spec.pooler.is_some() {
        entries.extend([
            ("pooler-host", pooler_host.as_str()),
            ("pooler-port", &port),
            ("pooler-uri", &pooler_uri),
            ("pooler-jdbc-uri", &pooler_jdbc),
        ]);
    }
    Secret {
        metadata: owner.meta(name(owner, user), owner.labels("user")),
        type_: Some("Opaque".into()),
        data: Some(data(entries)),
        ..Default::default()
    }
}

/// libpq and JDBC URIs. Generated passwords are alphanumeric and role names
/// `[a-z0-9_]`, so nothing needs percent-encoding.
fn uris(host: &str, port: &str, db: Option<&str>, c: &Credential) -> (String, String) {
    let path = db.map(|d| format!("/{d}")).unwrap_or_default();
    (
        format!("postgresql://{}:{}@{host}:{port}{path}", c.user, c.password),
        format!(
            "jdbc:postgresql://{host}:{port}{path}?user={}&password={}",
            c.user, c.password
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{test_cluster, test_credentials};

    fn text(s: &Secret, key: &str) -> Option<String> {
        s.data
            .as_ref()?
            .get(key)
            .map(|b| String::from_utf8(b.0.clone()).unwrap())
    }

    #[test]
    fn a_user_secret_carries_direct_and_pooled_connection_strings() {
        let c = test_cluster("main");
        let owner = Owner::new(&c);
        let creds = test_credentials(&c);
        let user = &c.spec.users[0];
        let cred = &creds.users[&user.name];
        let s = secret(&owner, user, cred);
        assert_eq!(s.metadata.name.as_deref(), Some("app-db"));
        assert_eq!(text(&s, "host").unwrap(), "main.db.svc");
        assert_eq!(text(&s, "dbname").unwrap(), "app");
        assert_eq!(
            text(&s, "uri").unwrap(),
            format!("postgresql://alice:{}@main.db.svc:5432/app", cred.password)
        );
        assert_eq!(
            text(&s, "pooler-jdbc-uri").unwrap(),
            format!(
                "jdbc:postgresql://main-pooler.db.svc:5432/app?user=alice&password={}",
                cred.password
            )
        );
        assert_eq!(text(&s, "pooler-host").unwrap(), "main-pooler.db.svc");
    }

    #[test]
    fn without_a_pooler_there_are_no_pooler_keys_and_names_default() {
        let mut c = test_cluster("main");
        c.spec.pooler = None;
        let owner = Owner::new(&c);
        let creds = test_credentials(&c);
        let user = &c.spec.users[1];
        let s = secret(&owner, user, &creds.users[&user.name]);
        assert_eq!(s.metadata.name.as_deref(), Some("main-reporter"));
        assert!(text(&s, "pooler-uri").is_none());
        assert!(text(&s, "uri").is_some());
    }
}
