//! One reconcile of one PostgresCluster: read the credentials back from
//! their Secrets (making the missing ones), apply every desired child,
//! observe what the workloads report, write the status. Idempotent: run it
//! again and nothing changes but `lastTransitionTime`s of conditions that
//! really changed.

use crate::api::PostgresCluster;
use crate::reconcile::{apply, status};
use crate::resources::{self, Child, Owner};
use crate::rollout;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Endpoints, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cluster has no uid yet (not read from the API server)")]
    NotStored,
    #[error("rendering the cluster's objects: {0}")]
    Render(#[from] resources::Error),
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("rolling update: {0}")]
    Rollout(#[from] rollout::Error),
    #[error("users and databases in PostgreSQL: {0}")]
    Users(String),
}

impl Error {
    /// Every `kind`, so the metrics show each at 0 before it first fails.
    pub const KINDS: [&'static str; 7] = [
        "not_stored",
        "render",
        "read",
        "apply",
        "status",
        "rollout",
        "users",
    ];

    /// A short label for metrics and events (bounded: one per variant).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotStored => "not_stored",
            Error::Render(_) => "render",
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Status(_) => "status",
            Error::Rollout(_) => "rollout",
            Error::Users(_) => "users",
        }
    }
}

/// What one reconcile did and when the next should run.
#[derive(Debug)]
pub struct Outcome {
    pub applied: usize,
    pub status: crate::api::PostgresClusterStatus,
    /// The rollout step this reconcile took (for the metrics).
    pub step: rollout::plan::Step,
    /// Soon while the cluster converges; rarely once it is Ready (the
    /// watches on the children bring a reconcile on any change anyway).
    pub requeue_after: Duration,
}

pub const REQUEUE_CONVERGING: Duration = Duration::from_secs(10);
pub const REQUEUE_READY: Duration = Duration::from_secs(300);
/// With backups, the archive's health is read from the primary at each
/// reconcile: nothing else brings one when archive_command starts failing.
pub const REQUEUE_ARCHIVE_CHECK: Duration = Duration::from_secs(60);
/// Pods belong to the StatefulSet, not to the cluster, so no watch wakes
/// the rollout when a recreated pod turns ready: it polls.
pub const REQUEUE_ROLLING: Duration = Duration::from_secs(5);

/// How a reconcile reaches into the cluster's pods.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub rollout: rollout::Settings,
    /// How to reach each cluster's primary to create its users and
    /// databases; `None`: do not (tests with no PostgreSQL behind).
    pub postgres: Option<PostgresAccess>,
    /// Which clusters' users were last found converged, and when.
    pub users_checked: UsersChecked,
}

/// A reconcile runs every 5-10 s while a cluster converges or rolls; the
/// users need checking only when something they depend on changed (the
/// spec's users, their verifiers, the primary) or now and then, in case
/// someone altered a role by hand.
#[derive(Clone, Debug, Default)]
pub struct UsersChecked(std::sync::Arc<std::sync::Mutex<BTreeMap<String, Checked>>>);

/// The fingerprint of what was found converged, and when.
type Checked = ([u8; 32], std::time::Instant);

/// How long a converged check stands when nothing it depends on changed.
pub const USERS_RECHECK: Duration = Duration::from_secs(300);

impl UsersChecked {
    fn fresh(&self, uid: &str, mark: &[u8; 32]) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(uid)
            .is_some_and(|(m, at)| m == mark && at.elapsed() < USERS_RECHECK)
    }

    fn record(&self, uid: &str, mark: [u8; 32]) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(uid.to_string(), (mark, std::time::Instant::now()));
    }
}

/// What the users' state in PostgreSQL depends on.
/// The status as a JSON merge patch that names every field: an unset one
/// as `null`, which removes it. A merge patch leaves alone every key it
/// does not mention, so skipping `primary: None` left a lost primary's
/// name in the status for good. (Server-side apply would drop fields its
/// manager stopped sending too, but kube-fake-client, which the tests run
/// against, does not model field ownership: this is the form both honour.)
fn status_patch(status: &crate::api::PostgresClusterStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).expect("a status serializes");
    if let Some(map) = v.as_object_mut() {
        for key in ["conditions", "observedGeneration", "primary"] {
            map.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    v
}

fn users_mark(
    cluster: &PostgresCluster,
    credentials: &crate::secrets::Credentials,
    primary: &str,
) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&cluster.spec.users).unwrap_or_default());
    for c in credentials.users.values() {
        h.update(c.verifier.as_bytes());
    }
    h.update(credentials.superuser.verifier.as_bytes());
    h.update(primary.as_bytes());
    h.finalize().into()
}

#[derive(Clone, Debug)]
pub struct PostgresAccess {
    /// None: the cluster's primary Service, `<cluster>.<namespace>.svc`.
    /// The name the certificate is checked against.
    pub host: Option<String>,
    /// Where to connect instead of resolving `host` (libpq's `hostaddr`);
    /// None in a cluster.
    pub hostaddr: Option<std::net::IpAddr>,
    pub port: u16,
    pub timeout: Duration,
    pub ssl_mode: tokio_postgres::config::SslMode,
}

impl Default for PostgresAccess {
    fn default() -> Self {
        PostgresAccess {
            host: None,
            hostaddr: None,
            port: resources::POSTGRES_PORT as u16,
            timeout: Duration::from_secs(10),
            ssl_mode: tokio_postgres::config::SslMode::Require,
        }
    }
}

pub async fn reconcile(
    client: &Client,
    cluster: &PostgresCluster,
    settings: &Settings,
) -> Result<Outcome, Error> {
    if cluster.uid().is_none() {
        // Without a uid the children would carry no owner reference and
        // outlive the cluster.
        return Err(Error::NotStored);
    }
    let owner = Owner::new(cluster);
    let ns = owner.namespace.as_str();
    let secrets = read_secrets(client, ns, resources::credential_secret_names(cluster)).await?;
    let credentials = resources::credentials(
        cluster,
        |name| secrets.get(name).cloned(),
        &mut rand::rngs::OsRng,
        crate::secrets::tls::today(),
    )?;
    let mut children = resources::desired(cluster, &credentials)?;
    hold_scale_down(client, &owner, &mut children).await?;
    for child in &children {
        apply::apply(client, ns, child)
            .await
            .map_err(|source| Error::Apply {
                what: child.describe(),
                source,
            })?;
    }

    let pooler_password = cluster
        .spec
        .pooler
        .as_ref()
        .map(|_| credentials.pooler.password.as_str());
    let progress = rollout::step(client, &owner, pooler_password, &settings.rollout).await;

    let statefulset = get::<StatefulSet>(client, ns, &owner.name).await?;
    let leader = get::<Endpoints>(client, ns, &owner.name).await?;
    let pooler = match cluster.spec.pooler {
        Some(_) => get::<Deployment>(client, ns, &resources::pooler_name(&owner)).await?,
        None => None,
    };
    // Whole seconds, as the API server stores a Time, so the status this
    // returns is the one stored.
    let now = Time(whole_seconds(k8s_openapi::jiff::Timestamp::now()));
    let has_primary = leader
        .as_ref()
        .and_then(|l| status::primary(l, &now))
        .is_some();
    // Not while pods are recreated or the primary moves: the reconcile
    // then runs every 5 s, and a primary that does not answer would cost
    // each one the connect timeout. The condition keeps its state.
    let rolling = !matches!(&progress, Ok(p) if p.rolling().is_none());
    let archive = match (&settings.postgres, &cluster.spec.backups) {
        (Some(_), Some(_)) if rolling => Some(Err("not read during a rollout".to_string())),
        (Some(access), Some(_)) if has_primary => {
            let read = read_archiver(client, &owner, &credentials, access).await;
            if let Err(e) = &read {
                tracing::warn!(cluster = %owner.name, namespace = %ns, error = %e, "reading pg_stat_archiver");
            }
            Some(read)
        }
        _ => None,
    };
    let observed = status::Observed {
        statefulset: statefulset.as_ref(),
        leader: leader.as_ref(),
        pooler: pooler.as_ref(),
        rollout: match &progress {
            Ok(p) => p.rolling(),
            Err(e) => Some(format!("rolling update failed: {e}")),
        },
        archive,
    };
    let new_status = status::compute(cluster, &observed, now);
    if cluster.status.as_ref() != Some(&new_status) {
        let api: Api<PostgresCluster> = Api::namespaced(client.clone(), ns);
        let patch = serde_json::json!({ "status": status_patch(&new_status) });
        api.patch_status(&owner.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::Status)?;
    }
    // Users need a primary to be created in; the next reconcile after
    // one is elected does it. Not while pods are being recreated: the
    // primary may be the next to go, and the rollout comes first.
    let uid = cluster.uid().unwrap_or_default();
    let users = match (&settings.postgres, &new_status.primary) {
        // Always: the admin role is the controller's to make too.
        (Some(access), Some(primary)) if !rolling => {
            let mark = users_mark(cluster, &credentials, primary);
            if settings.users_checked.fresh(&uid, &mark) {
                Ok(())
            } else {
                let done = ensure_users(client, &owner, &credentials, access).await;
                if done.is_ok() {
                    settings.users_checked.record(&uid, mark);
                }
                done
            }
        }
        _ => Ok(()),
    };
    let progress = progress?;
    users?;
    let ready = new_status
        .conditions
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    Ok(Outcome {
        applied: children.len(),
        status: new_status,
        requeue_after: if progress.rolling().is_some() {
            REQUEUE_ROLLING
        } else if ready && cluster.spec.backups.is_some() {
            REQUEUE_ARCHIVE_CHECK
        } else if ready {
            REQUEUE_READY
        } else {
            REQUEUE_CONVERGING
        },
        step: progress.step,
    })
}

async fn ensure_users(
    client: &Client,
    owner: &Owner<'_>,
    credentials: &crate::secrets::Credentials,
    access: &PostgresAccess,
) -> Result<(), Error> {
    let ns = owner.namespace.as_str();
    let pg = connect_primary(client, owner, credentials, access)
        .await
        .map_err(Error::Users)?;
    let (users, credentials) = crate::postgres::roles::managed(&owner.cluster.spec, credentials);
    let steps = crate::postgres::roles::ensure(&pg, &users, &credentials)
        .await
        .map_err(|e| {
            Error::Users(match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            })
        })?;
    for step in &steps {
        tracing::info!(cluster = %owner.name, namespace = %ns, "postgres: {}", step.summary);
    }
    Ok(())
}

/// `pg_stat_archiver` on the primary, or why it could not be read.
async fn read_archiver(
    client: &Client,
    owner: &Owner<'_>,
    credentials: &crate::secrets::Credentials,
    access: &PostgresAccess,
) -> Result<crate::postgres::archive::Archiver, String> {
    let pg = connect_primary(client, owner, credentials, access).await?;
    crate::postgres::archive::read(&pg)
        .await
        .map_err(|e| e.to_string())
}

/// The superuser's connection to the primary, through its Service.
async fn connect_primary(
    client: &Client,
    owner: &Owner<'_>,
    credentials: &crate::secrets::Credentials,
    access: &PostgresAccess,
) -> Result<tokio_postgres::Client, String> {
    let ns = owner.namespace.as_str();
    // The certificate is verified, name and chain: against the CA the
    // controller issued, else the manifest's CA Secret, else (a user
    // certificate with no CA named) only encrypted, as sslmode=require.
    let ca_pem = match (&credentials.tls, owner.tls().ca_secret_name) {
        (Some(issued), _) => Some(issued.ca_cert.clone().into_bytes()),
        (None, Some(name)) => {
            let secret = get::<Secret>(client, ns, &name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the CA Secret {name} does not exist"))?;
            let ca = secret.data.and_then(|mut d| d.remove("ca.crt"));
            Some(
                ca.ok_or_else(|| format!("the Secret {name} has no ca.crt"))?
                    .0,
            )
        }
        (None, None) => None,
    };
    let target = crate::postgres::connect::Target {
        host: access
            .host
            .clone()
            .unwrap_or_else(|| format!("{}.{ns}.svc", owner.name)),
        hostaddr: access.hostaddr,
        port: access.port,
        user: credentials.superuser.user.clone(),
        password: credentials.superuser.password.clone(),
        dbname: "postgres".into(),
        ca_pem,
        ssl_mode: access.ssl_mode,
    };
    crate::postgres::connect::connect(&target, access.timeout)
        .await
        .map_err(|e| e.to_string())
}

/// A scale-down must not remove the primary's pod: while Patroni's leader
/// is in one it would remove, keep the StatefulSet at its current size
/// (the rollout switches over first).
async fn hold_scale_down(
    client: &Client,
    owner: &Owner<'_>,
    children: &mut [Child],
) -> Result<(), Error> {
    let ns = owner.namespace.as_str();
    let current = get::<StatefulSet>(client, ns, &owner.name)
        .await?
        .and_then(|s| s.spec)
        .and_then(|s| s.replicas);
    let Some(current) = current.and_then(|c| u32::try_from(c).ok()) else {
        return Ok(());
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let leader = get::<Endpoints>(client, ns, &owner.name).await?;
    let primary = leader.as_ref().and_then(|l| status::primary(l, &now));
    let instances = owner.cluster.spec.instances as u32;
    let keep = rollout::plan::replicas(
        instances,
        Some(current),
        rollout::primary_ordinal(owner, primary.as_deref()),
    );
    if keep != instances {
        tracing::info!(
            cluster = %owner.name,
            "scale-down to {instances} held at {keep} until the primary {} moves",
            primary.as_deref().unwrap_or_default()
        );
    }
    for child in children.iter_mut() {
        if let Child::StatefulSet(s) = child {
            if let Some(spec) = s.spec.as_mut() {
                spec.replicas = Some(keep as i32);
            }
        }
    }
    Ok(())
}

async fn read_secrets(
    client: &Client,
    ns: &str,
    names: Vec<String>,
) -> Result<BTreeMap<String, Secret>, Error> {
    let mut found = BTreeMap::new();
    for name in names {
        if let Some(s) = get::<Secret>(client, ns, &name).await? {
            found.insert(name, s);
        }
    }
    Ok(found)
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.map_err(|source| Error::Read {
        what: format!("{} {ns}/{name}", K::kind(&K::DynamicType::default())),
        source,
    })
}

fn whole_seconds(t: k8s_openapi::jiff::Timestamp) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}
