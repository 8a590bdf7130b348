//! The pooler's configuration, rendered from pgwolf's own config types so a
//! key the proxy does not know cannot be written: a ConfigMap with
//! `pgwolf.toml` (no credentials) and a Secret with the auth file (SCRAM
//! verifiers only, never a password).

use super::meta::{Owner, POOLER_HTTP_PORT, POOLER_PORT, POSTGRES_PORT, ROLE_LABEL};
use super::system_secrets::data;
use super::Error;
use crate::api::PoolerSpec;
use crate::secrets::{Credentials, POOLER_USER};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use pgwolf::config::{AuthType, ClusterConfig, Config, DatabaseConfig, SslMode};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub const CONFIG_DIR: &str = "/etc/pgwolf";
pub const CONFIG_FILE: &str = "pgwolf.toml";
pub const AUTH_DIR: &str = "/etc/pgwolf/auth";
pub const AUTH_FILE: &str = "userlist.txt";
/// `spec.tls.caSecretName`'s `ca.crt`, when set: what the pooler verifies
/// the instances' certificates against.
pub const SERVER_CA_DIR: &str = "/etc/pgwolf/server-ca";
pub const SERVER_CA_FILE: &str = "ca.crt";
/// The instances' certificate Secret's `tls.crt`/`tls.key`: what the pooler
/// shows its clients.
pub const CLIENT_TLS_DIR: &str = "/etc/pgwolf/tls";
pub const CLIENT_TLS_CERT: &str = "tls.crt";
pub const CLIENT_TLS_KEY: &str = "tls.key";

pub fn config_map_name(owner: &Owner) -> String {
    owner.child("pooler")
}

/// Ends in `-credentials` like the other controller-owned Secrets, a
/// suffix declared users cannot produce.
pub fn auth_secret_name(owner: &Owner) -> String {
    owner.child("pooler-credentials")
}

/// pgwolf's config: the cluster as a `kubernetes`-provider cluster
/// following Patroni's leader Endpoints, every declared database routed to
/// it, clients authenticated from the auth file. Unset settings keep
/// pgwolf's defaults (the proxy's `Default`/serde defaults, not copies).
pub fn pgwolf_config(owner: &Owner, pooler: &PoolerSpec) -> Result<Config, Error> {
    let cluster: ClusterConfig = serde_json::from_value(json!({
        "provider": "kubernetes",
        "namespace": owner.namespace,
        "endpoints": owner.name,
        "pod_selector": owner.member_selector_string(),
        "role_label": ROLE_LABEL,
        "port": POSTGRES_PORT,
        "read_only_suffix": pooler.read_only_alias,
    }))
    .map_err(Error::PoolerConfig)?;
    let databases: BTreeSet<&String> = owner
        .cluster
        .spec
        .users
        .iter()
        .flat_map(|u| &u.databases)
        .collect();
    let databases = databases
        .into_iter()
        .map(|db| {
            let entry: DatabaseConfig = serde_json::from_value(json!({ "cluster": owner.name }))
                .map_err(Error::PoolerConfig)?;
            Ok((db.clone(), entry))
        })
        .collect::<Result<BTreeMap<_, _>, Error>>()?;
    Ok(Config {
        listen: vec![format!("0.0.0.0:{POOLER_PORT}")],
        auth_type: AuthType::ScramSha256,
        auth_file: Some(PathBuf::from(AUTH_DIR).join(AUTH_FILE)),
        pool_mode: pooler.mode.into(),
        default_pool_size: positive("pooler.defaultPoolSize", pooler.default_pool_size)?,
        max_client_conn: positive("pooler.maxClientConn", pooler.max_client_conn)?,
        http_listen: format!("0.0.0.0:{POOLER_HTTP_PORT}"),
        admin_users: vec![POOLER_USER.to_string()],
        // Spilo's pg_hba takes only TLS from outside the pod. The pooler
        // reaches instances by pod IP, which no certificate names: verify
        // the chain (verify-ca) against the issued or the manifest's CA;
        // with user certificates and no CA, encrypt unverified as libpq's
        // require does.
        server_tls_sslmode: if server_ca(owner) {
            SslMode::VerifyCa
        } else {
            SslMode::Require
        },
        server_tls_ca_file: server_ca(owner)
            .then(|| PathBuf::from(SERVER_CA_DIR).join(SERVER_CA_FILE)),
        // Clients must use TLS, as Spilo asks of direct connections: a
        // pooled connection is no weaker than a direct one.
        client_tls_sslmode: SslMode::Require,
        client_tls_cert_file: Some(PathBuf::from(CLIENT_TLS_DIR).join(CLIENT_TLS_CERT)),
        client_tls_key_file: Some(PathBuf::from(CLIENT_TLS_DIR).join(CLIENT_TLS_KEY)),
        databases,
        clusters: BTreeMap::from([(owner.name.clone(), cluster)]),
        ..Config::default()
    })
}

/// Whether there is a CA for the instances' certificates: the one the
/// controller issues, or the manifest's `spec.tls.caSecretName`.
pub fn server_ca(owner: &Owner) -> bool {
    owner.tls().ca_secret_name.is_some()
}

/// The schema keeps these at 1 or more; a manifest that skipped the API
/// server (`render`) gets an error instead of a wrapped-around count.
fn positive(field: &'static str, v: i32) -> Result<u32, Error> {
    u32::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or(Error::Invalid {
            field,
            message: "must be at least 1",
        })
}

/// The settings `pgwolf_config` chooses; everything else is left to
/// pgwolf's defaults.
const CHOSEN: [&str; 15] = [
    "listen",
    "auth_type",
    "auth_file",
    "pool_mode",
    "default_pool_size",
    "max_client_conn",
    "http_listen",
    "admin_users",
    "server_tls_sslmode",
    "server_tls_ca_file",
    "client_tls_sslmode",
    "client_tls_cert_file",
    "client_tls_key_file",
    "databases",
    "clusters",
];
const CHOSEN_PER_CLUSTER: [&str; 7] = [
    "provider",
    "namespace",
    "endpoints",
    "pod_selector",
    "role_label",
    "port",
    "read_only_suffix",
];
const CHOSEN_PER_DATABASE: [&str; 1] = ["cluster"];

/// `pgwolf.toml`, checked with pgwolf's own validation first so a config
/// the pooler would refuse is never written. Only the settings the
/// controller chooses are written, each explicitly even where it equals
/// today's default; the rest are left to the pooler image's defaults, so a
/// setting added to pgwolf does not rewrite every cluster's config.
pub fn config_toml(owner: &Owner, pooler: &PoolerSpec) -> Result<String, Error> {
    let config = pgwolf_config(owner, pooler)?;
    pgwolf::config::validate(&config).map_err(Error::PoolerInvalid)?;
    let mut out = toml::Table::try_from(&config).map_err(Error::PoolerToml)?;
    out.retain(|k, _| CHOSEN.contains(&k));
    for (key, keep) in [
        ("clusters", &CHOSEN_PER_CLUSTER[..]),
        ("databases", &CHOSEN_PER_DATABASE[..]),
    ] {
        if let Some(toml::Value::Table(entries)) = out.get_mut(key) {
            for (_, entry) in entries.iter_mut() {
                if let toml::Value::Table(e) = entry {
                    e.retain(|k, _| keep.contains(&k));
                }
            }
        }
    }
    toml::to_string(&sorted(out)).map_err(Error::PoolerToml)
}

/// The table with its keys in sorted order at every depth: toml keeps
/// insertion order when a crate in the build enables its `preserve_order`
/// feature, and the rendered config must not depend on that (yaml.rs).
fn sorted(table: toml::Table) -> toml::Table {
    let mut entries: Vec<(String, toml::Value)> = table.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::Table(t) => toml::Value::Table(sorted(t)),
                other => other,
            };
            (k, v)
        })
        .collect()
}

/// PgBouncer's userlist format, one `"user" "verifier"` line per role that
/// may log in through the pooler: the declared users and pgwolf's admin.
pub fn auth_file(credentials: &Credentials) -> String {
    let mut lines: Vec<String> = credentials
        .users
        .values()
        .chain([&credentials.pooler])
        .map(|c| format!("\"{}\" \"{}\"\n", c.user, c.verifier))
        .collect();
    lines.sort();
    lines.concat()
}

pub fn config_map(owner: &Owner, config_toml: String) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(config_map_name(owner), owner.labels("pooler")),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), config_toml)])),
        ..Default::default()
    }
}

pub fn auth_secret(owner: &Owner, auth_file: &str) -> Secret {
    Secret {
        metadata: owner.meta(auth_secret_name(owner), owner.labels("pooler")),
        type_: Some("Opaque".into()),
        data: Some(data([(AUTH_FILE, auth_file)])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{test_cluster, test_credentials};
    use pgwolf::config::{PoolMode, Provider, TargetRole};

    fn pod_of(owner: &Owner, pooler: &PoolerSpec) -> k8s_openapi::api::core::v1::PodSpec {
        crate::resources::pooler::deployment(owner, pooler, "hash".into())
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    }

    fn secret_volume(
        pod: &k8s_openapi::api::core::v1::PodSpec,
        name: &str,
    ) -> k8s_openapi::api::core::v1::SecretVolumeSource {
        let volumes = pod.volumes.as_ref().unwrap();
        let v = volumes.iter().find(|v| v.name == name);
        v.and_then(|v| v.secret.clone())
            .unwrap_or_else(|| panic!("no Secret volume {name}"))
    }

    #[test]
    fn the_pooler_speaks_tls_to_the_instances_verifying_the_chain_when_there_is_a_ca() {
        let ca_file = Some(PathBuf::from("/etc/pgwolf/server-ca/ca.crt"));
        // The controller's own CA, by default.
        let c = test_cluster("main");
        let owner = Owner::new(&c);
        let pooler = c.spec.pooler.as_ref().unwrap();
        let cfg = pgwolf_config(&owner, pooler).unwrap();
        assert_eq!(cfg.server_tls_sslmode, SslMode::VerifyCa);
        assert_eq!(cfg.server_tls_ca_file, ca_file);
        // Its clients must use TLS, with the instances' certificate.
        assert_eq!(cfg.client_tls_sslmode, SslMode::Require);
        assert_eq!(
            cfg.client_tls_cert_file,
            Some(PathBuf::from("/etc/pgwolf/tls/tls.crt"))
        );
        let tls = secret_volume(&pod_of(&owner, pooler), "tls");
        assert_eq!(tls.secret_name.as_deref(), Some("main-tls"));
        let keys: Vec<String> = tls.items.unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["tls.crt", "tls.key"], "never the CA's key");

        // User certificates and no CA: encrypted, unverified.
        let mut c = test_cluster("main");
        c.spec.tls = Some(serde_json::from_value(json!({"secretName": "pg-tls"})).unwrap());
        let cfg = pgwolf_config(&Owner::new(&c), pooler).unwrap();
        assert_eq!(cfg.server_tls_sslmode, SslMode::Require);
        assert_eq!(cfg.server_tls_ca_file, None);

        let mut c = test_cluster("main");
        c.spec.tls = Some(
            serde_json::from_value(json!({"secretName": "pg-tls", "caSecretName": "pg-ca"}))
                .unwrap(),
        );
        let owner = Owner::new(&c);
        let text = config_toml(&owner, pooler).unwrap();
        let cfg: Config = toml::from_str(&text).unwrap();
        pgwolf::config::validate(&cfg).unwrap();
        assert_eq!(cfg.server_tls_sslmode, SslMode::VerifyCa);
        assert_eq!(cfg.server_tls_ca_file, ca_file);
        // The Deployment mounts that file from the CA Secret.
        let pod = pod_of(&owner, pooler);
        let secret = secret_volume(&pod, "server-ca");
        assert_eq!(secret.secret_name.as_deref(), Some("pg-ca"));
        assert_eq!(secret.items.unwrap()[0].key, "ca.crt");
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == SERVER_CA_DIR));
    }

    #[test]
    fn the_rendered_toml_loads_and_validates_as_pgwolf_config() {
        let c = test_cluster("main");
        let owner = Owner::new(&c);
        let pooler = c.spec.pooler.as_ref().unwrap();
        let text = config_toml(&owner, pooler).unwrap();
        let cfg: Config = toml::from_str(&text).unwrap();
        pgwolf::config::validate(&cfg).unwrap();
        // Nothing the controller chose was left out.
        assert_eq!(cfg, pgwolf_config(&owner, pooler).unwrap());
        assert!(
            !text.contains("server_lifetime"),
            "a default was written:\n{text}"
        );
        assert!(!text.contains("host ="), "a default was written:\n{text}");

        let cluster = &cfg.clusters["main"];
        assert_eq!(cluster.provider, Provider::Kubernetes);
        assert_eq!(cluster.endpoints.as_deref(), Some("main"));
        assert_eq!(cluster.namespace.as_deref(), Some("db"));
        assert_eq!(cluster.role_label, "spilo-role");
        assert_eq!(
            cluster.pod_selector.as_deref(),
            Some("application=spilo,cluster-name=main")
        );
        assert_eq!(cfg.pool_mode, PoolMode::Session);
        assert_eq!(cfg.default_pool_size, 7);
        assert_eq!(cfg.admin_users, ["pgwolf"]);
        // Both users' databases, each once.
        assert_eq!(cfg.databases.keys().collect::<Vec<_>>(), ["app", "reports"]);
        let ro = cfg.resolve_database("app_ro").unwrap();
        assert_eq!(ro.role, Some(TargetRole::Replica));
    }

    #[test]
    fn the_config_map_holds_no_credential_and_the_auth_file_only_verifiers() {
        let c = test_cluster("main");
        let owner = Owner::new(&c);
        let creds = test_credentials(&c);
        let text = config_toml(&owner, c.spec.pooler.as_ref().unwrap()).unwrap();
        let auth = auth_file(&creds);
        for cred in creds
            .users
            .values()
            .chain([&creds.pooler, &creds.superuser])
        {
            assert!(!text.contains(&cred.password) && !text.contains(&cred.verifier));
            assert!(!auth.contains(&cred.password));
        }
        let parsed = pgwolf::auth::AuthFile::parse(&auth).unwrap();
        assert_eq!(parsed.names(), ["alice", "pgwolf", "reporter"]);
        for name in parsed.names() {
            assert!(
                parsed.get(name).unwrap().scram_verifier().is_some(),
                "{name}"
            );
        }
    }
}
