//! Pure builders: `&PostgresCluster` (and its credentials) to the objects
//! the controller wants to exist. No I/O, no clock, no randomness, so the
//! same input always renders the same objects (golden files rely on it).
//!
//! - `meta`: names, labels, owner references shared by every child.
//! - `rbac`: Patroni's and the pooler's ServiceAccount, Role, RoleBinding.
//! - `system_secrets`: superuser, replication, admin and pooler-admin credentials.
//! - `statefulset`, `instance_env`, `patroni_config`: the instances, their
//!   environment and Patroni's configuration file.
//! - `services`: primary (Patroni-managed Endpoints), replicas, headless, config.
//! - `pdb`: the instances' PodDisruptionBudgets (the primary's, the others').
//! - `pooler_config`, `pooler`: pgwolf's config and auth file, Deployment, Service.
//! - `user_secrets`: each declared user's credentials and connection strings.
//! - `tls_secrets`: the certificates the controller issues without `spec.tls`.
//! - `monitoring`: the postgres_exporter sidecar, its query file and login.
//! - `podmonitor`, `scrape_config`: where Prometheus finds the metrics,
//!   with the Prometheus Operator and without.
//! - `pgbackrest`: `spec.backups`: pgBackRest's config, its repository
//!   volumes and what Patroni is told to archive and restore with.

mod instance_env;
mod meta;
mod monitoring;
pub mod patroni_config;
mod pdb;
pub mod pgbackrest;
mod podmonitor;
mod pooler;
mod pooler_config;
mod rbac;
mod scrape_config;
mod services;
mod statefulset;
mod system_secrets;
mod tls_secrets;
mod user_secrets;

pub use meta::{
    Owner, PATRONI_PORT, POOLER_PORT, POSTGRES_PORT, ROLE_LABEL, SCOPE_LABEL, SPILO_LABEL,
};
pub use podmonitor::PodMonitor;
pub use pooler::{name as pooler_name, CONFIG_HASH_ANNOTATION};
pub use pooler_config::pgwolf_config;
pub use scrape_config::KEY as SCRAPE_CONFIG_KEY;
pub use statefulset::PATRONI_CONFIG_HASH_ANNOTATION;
pub use tls_secrets::{ca_secret_name, server_secret_name as tls_secret_name};

use crate::api::PostgresCluster;
use crate::secrets::{
    Credential, Credentials, ADMIN_USER, MONITOR_USER, POOLER_USER, REPLICATION_USER, SUPERUSER,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the pooler's config from pgwolf's config types: {0}")]
    PoolerConfig(#[source] serde_json::Error),
    #[error("serializing the pooler's config as TOML: {0}")]
    PoolerToml(#[source] toml::ser::Error),
    #[error("spec.{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("writing patroni.yml: {0}")]
    PatroniYaml(#[source] serde_saphyr::SerializeError),
    #[error("writing the Prometheus scrape config: {0}")]
    ScrapeConfigYaml(#[source] serde_saphyr::SerializeError),
    #[error("the pooler's config is not valid pgwolf config: {0}")]
    PoolerInvalid(#[source] pgwolf::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::secrets::tls::Error),
}

/// One object the controller manages. Serializes as the object itself
/// (k8s-openapi types carry their own `apiVersion` and `kind`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Child {
    ServiceAccount(ServiceAccount),
    Role(Role),
    RoleBinding(RoleBinding),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Service(Service),
    StatefulSet(StatefulSet),
    PodDisruptionBudget(PodDisruptionBudget),
    Deployment(Deployment),
    PodMonitor(PodMonitor),
    PersistentVolumeClaim(PersistentVolumeClaim),
}

impl Child {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Child::ServiceAccount(o) => &o.metadata,
            Child::Role(o) => &o.metadata,
            Child::RoleBinding(o) => &o.metadata,
            Child::Secret(o) => &o.metadata,
            Child::ConfigMap(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::StatefulSet(o) => &o.metadata,
            Child::PodDisruptionBudget(o) => &o.metadata,
            Child::Deployment(o) => &o.metadata,
            Child::PodMonitor(o) => &o.metadata,
            Child::PersistentVolumeClaim(o) => &o.metadata,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Child::ServiceAccount(_) => "ServiceAccount",
            Child::Role(_) => "Role",
            Child::RoleBinding(_) => "RoleBinding",
            Child::Secret(_) => "Secret",
            Child::ConfigMap(_) => "ConfigMap",
            Child::Service(_) => "Service",
            Child::StatefulSet(_) => "StatefulSet",
            Child::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Child::Deployment(_) => "Deployment",
            Child::PodMonitor(_) => "PodMonitor",
            Child::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
        }
    }

    /// `Kind namespace/name`, for errors and events.
    pub fn describe(&self) -> String {
        let m = self.metadata();
        format!(
            "{} {}/{}",
            self.kind(),
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default()
        )
    }
}

/// Every object of the cluster, in an order that applies cleanly on its
/// own: identities and Secrets before the workloads that use them.
pub fn desired(cluster: &PostgresCluster, credentials: &Credentials) -> Result<Vec<Child>, Error> {
    let owner = Owner::new(cluster);
    let spec = &cluster.spec;
    let mut out = Vec::new();
    let (sa, role, binding) = rbac::patroni(&owner);
    out.extend([
        Child::ServiceAccount(sa),
        Child::Role(role),
        Child::RoleBinding(binding),
    ]);
    for c in [
        &credentials.superuser,
        &credentials.replication,
        &credentials.admin,
    ] {
        out.push(Child::Secret(system_secrets::secret(&owner, c)));
    }
    for user in &spec.users {
        if let Some(c) = credentials.users.get(&user.name) {
            out.push(Child::Secret(user_secrets::secret(&owner, user, c)));
        }
    }
    if owner.issues_tls() {
        let tls = credentials.tls.as_ref().ok_or(Error::Invalid {
            field: "tls",
            message: "unset, and no certificates were issued for the cluster",
        })?;
        out.push(Child::Secret(tls_secrets::ca_secret(&owner, tls)));
        out.push(Child::Secret(tls_secrets::server_secret(&owner, tls)));
    }
    if monitoring::exporter(&owner).is_some() {
        let monitor = credentials.monitor.as_ref().ok_or(Error::Invalid {
            field: "monitoring",
            message: "the exporter is on and no credential was made for it",
        })?;
        out.push(Child::Secret(system_secrets::secret(&owner, monitor)));
        out.push(Child::ConfigMap(monitoring::config_map(&owner)));
    }
    if let Some(backups) = pgbackrest::backups(&owner) {
        out.push(Child::ConfigMap(pgbackrest::config_map(&owner, backups)));
        out.extend(
            pgbackrest::claims(&owner, backups)
                .into_iter()
                .map(Child::PersistentVolumeClaim),
        );
    }
    out.extend([
        Child::Service(services::primary(&owner)),
        Child::Service(services::replicas(&owner)),
        Child::Service(services::headless(&owner)),
        Child::Service(services::config(&owner)),
    ]);
    let patroni_yml = patroni_config::yaml(&owner).map_err(Error::PatroniYaml)?;
    let patroni_hash = hex(&Sha256::digest(&patroni_yml));
    out.extend([
        Child::ConfigMap(patroni_config::config_map(&owner, patroni_yml)),
        Child::StatefulSet(statefulset::statefulset(&owner, patroni_hash)),
    ]);
    out.extend(
        pdb::pdbs(&owner)
            .into_iter()
            .map(Child::PodDisruptionBudget),
    );
    if let Some(pooler) = &spec.pooler {
        let toml = pooler_config::config_toml(&owner, pooler)?;
        let auth = pooler_config::auth_file(credentials);
        // The config only: a new user or password changes the auth file,
        // which the running pooler re-reads (auth_file_reload_interval),
        // so it must not roll the pods and disconnect every client.
        let hash = hex(&Sha256::digest(&toml));
        let (sa, role, binding) = rbac::pooler(&owner);
        out.extend([
            Child::ServiceAccount(sa),
            Child::Role(role),
            Child::RoleBinding(binding),
            Child::Secret(system_secrets::secret(&owner, &credentials.pooler)),
            Child::Secret(pooler_config::auth_secret(&owner, &auth)),
            Child::ConfigMap(pooler_config::config_map(&owner, toml)),
            Child::Deployment(pooler::deployment(&owner, pooler, hash)),
            Child::Service(pooler::service(&owner)),
        ]);
    }
    out.extend(
        podmonitor::pod_monitors(&owner)
            .into_iter()
            .map(Child::PodMonitor),
    );
    if let Some(cm) = scrape_config::config_map(&owner).map_err(Error::ScrapeConfigYaml)? {
        out.push(Child::ConfigMap(cm));
    }
    Ok(out)
}

/// The credentials a reconcile passes to [`desired`]: each role's as its
/// Secret holds it (`secret` looks a Secret up by name in the cluster's
/// namespace), a new one where the Secret is missing or unusable. So a
/// password is made once and then survives every reconcile; the same holds
/// for the certificates issued when there is no `spec.tls` (`today`, UTC
/// year-month-day, starts a new certificate's validity).
pub fn credentials<R: Rng>(
    cluster: &PostgresCluster,
    secret: impl Fn(&str) -> Option<Secret>,
    rng: &mut R,
    today: (i16, i8, i8),
) -> Result<Credentials, Error> {
    let owner = Owner::new(cluster);
    let mut credentials = Credentials::resolve(
        &cluster.spec,
        |role| {
            secret(&credential_secret(&owner, role)).and_then(|s| Credential::from_secret(role, &s))
        },
        rng,
    );
    if owner.issues_tls() {
        let found = tls_secrets::found(
            secret(&tls_secrets::ca_secret_name(&owner)).as_ref(),
            secret(&tls_secrets::server_secret_name(&owner)).as_ref(),
        );
        let subject = format!("{}/{}", owner.namespace, owner.name);
        credentials.tls = Some(crate::secrets::tls::resolve(
            &found,
            &subject,
            &tls_secrets::host_names(&owner),
            today,
        )?);
    }
    Ok(credentials)
}

/// The name of every Secret [`credentials`] reads, so a reconcile can
/// fetch each by name. By name, not by label: a Secret whose labels were
/// edited must still keep its password.
pub fn credential_secret_names(cluster: &PostgresCluster) -> Vec<String> {
    let owner = Owner::new(cluster);
    let system = [SUPERUSER, REPLICATION_USER, ADMIN_USER, POOLER_USER];
    let monitor = monitoring::exporter(&owner).map(|_| MONITOR_USER);
    let users = cluster.spec.users.iter().map(|u| u.name.as_str());
    let mut names: Vec<String> = system
        .into_iter()
        .chain(monitor)
        .chain(users)
        .map(|role| credential_secret(&owner, role))
        .collect();
    if owner.issues_tls() {
        names.push(tls_secrets::ca_secret_name(&owner));
        names.push(tls_secrets::server_secret_name(&owner));
    }
    names
}

fn credential_secret(owner: &Owner, role: &str) -> String {
    match owner.cluster.spec.users.iter().find(|u| u.name == role) {
        Some(user) => user_secrets::name(owner, user),
        None => system_secrets::name(owner, role),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cluster as the API server would return it (uid, namespace), with a
/// pooler and two users sharing a database.
#[cfg(test)]
pub(crate) fn test_cluster(name: &str) -> PostgresCluster {
    let mut c: PostgresCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "pgwolf.io/v1alpha1",
        "kind": "PostgresCluster",
        "metadata": {"name": name, "namespace": "db", "uid": "6f1c1a2e-0000-4000-8000-000000000001"},
        "spec": {
            "instances": 3,
            "users": [
                {"name": "alice", "databases": ["app"], "secretName": "app-db"},
                {"name": "reporter", "databases": ["reports", "app"]}
            ],
            "pooler": {"mode": "session", "defaultPoolSize": 7, "readOnlyAlias": "_ro"}
        }
    }))
    .unwrap();
    c.metadata.generation = Some(1);
    c
}

#[cfg(test)]
pub(crate) fn test_credentials(c: &PostgresCluster) -> Credentials {
    use rand::SeedableRng;
    credentials(
        c,
        |_| None,
        &mut rand::rngs::StdRng::seed_from_u64(42),
        TEST_DAY,
    )
    .unwrap()
}

#[cfg(test)]
pub(crate) const TEST_DAY: (i16, i8, i8) = (2026, 12, 3);

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(c: &Child) -> &ObjectMeta {
        c.metadata()
    }

    #[test]
    fn every_child_is_owned_by_the_cluster_in_its_namespace() {
        let c = test_cluster("main");
        let all = desired(&c, &test_credentials(&c)).unwrap();
        assert_eq!(all.len(), 26);
        for child in &all {
            let m = meta(child);
            assert_eq!(m.namespace.as_deref(), Some("db"), "{:?}", m.name);
            let refs = m.owner_references.as_ref().expect("owner reference");
            assert_eq!(refs[0].uid, "6f1c1a2e-0000-4000-8000-000000000001");
            assert_eq!(refs[0].controller, Some(true));
        }
    }

    #[test]
    fn names_are_unique_per_kind() {
        let c = test_cluster("main");
        let mut seen = std::collections::BTreeSet::new();
        for child in desired(&c, &test_credentials(&c)).unwrap() {
            let kind = serde_json::to_value(&child).unwrap()["kind"].clone();
            let name = meta(&child).name.clone().unwrap();
            assert!(
                seen.insert((kind.to_string(), name.clone())),
                "{kind} {name}"
            );
        }
    }

    /// A second reconcile that finds the first one's Secrets renders the
    /// very same objects: no password or verifier is made again.
    #[test]
    fn credentials_read_back_from_the_rendered_secrets_are_the_same() {
        use rand::SeedableRng;
        let c = test_cluster("main");
        let first = test_credentials(&c);
        let objects = desired(&c, &first).unwrap();
        let secrets: std::collections::BTreeMap<String, Secret> = objects
            .iter()
            .filter_map(|o| match o {
                Child::Secret(s) => Some((s.metadata.name.clone().unwrap(), s.clone())),
                _ => None,
            })
            .collect();
        let mut other_seed = rand::rngs::StdRng::seed_from_u64(99);
        let again = credentials(
            &c,
            |name| secrets.get(name).cloned(),
            &mut other_seed,
            TEST_DAY,
        )
        .unwrap();
        assert_eq!(again, first);
        assert_eq!(desired(&c, &again).unwrap(), objects);

        // A user added later gets a new credential; the others keep theirs.
        let mut more = c.clone();
        more.spec
            .users
            .push(serde_json::from_value(serde_json::json!({"name": "carol"})).unwrap());
        let third = credentials(
            &more,
            |name| secrets.get(name).cloned(),
            &mut other_seed,
            TEST_DAY,
        )
        .unwrap();
        assert_eq!(third.users["alice"], first.users["alice"]);
        assert_eq!(third.superuser, first.superuser);
        assert!(third.users.contains_key("carol"));
    }

    #[test]
    fn no_pooler_objects_without_a_pooler() {
        let mut c = test_cluster("main");
        c.spec.pooler = None;
        let all = desired(&c, &test_credentials(&c)).unwrap();
        assert!(all.iter().all(|o| !matches!(o, Child::Deployment(_))));
        assert!(all
            .iter()
            .all(|o| !meta(o).name.as_deref().unwrap().contains("pooler")));
    }

    #[test]
    fn the_config_hash_follows_the_config_not_the_users() {
        let hash = |c: &PostgresCluster| {
            desired(c, &test_credentials(c))
                .unwrap()
                .into_iter()
                .find_map(|o| match o {
                    Child::Deployment(d) => d.spec?.template.metadata?.annotations,
                    _ => None,
                })
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        };
        let c = test_cluster("main");
        // A user on a database the pooler already routes: only the auth
        // file changes, and the pods stay.
        let mut more = c.clone();
        more.spec.users.push(
            serde_json::from_value(serde_json::json!({"name": "carol", "databases": ["app"]}))
                .unwrap(),
        );
        assert_eq!(hash(&c), hash(&more));
        let mut mode = c.clone();
        mode.spec.pooler.as_mut().unwrap().default_pool_size = 9;
        assert_ne!(hash(&c), hash(&mode));
    }
}
