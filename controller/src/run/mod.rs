//! `pgwolf-controller run`: the reconcile loop in a cluster. kube-runtime's
//! Controller watches PostgresClusters and, through `.owns()`, every child
//! kind (filtered by the managed-by label), so a deleted Service, Secret or
//! Deployment brings a reconcile of its cluster within seconds. With
//! leader election on, nothing is reconciled until this replica holds the
//! Lease; a replica that cannot renew it for a lease duration exits, so
//! two never write at once. Instance pods being deleted and cordoned nodes
//! bring a reconcile too: the primary must leave them before they go.
//!
//! - `metrics`: what /metrics shows.
//! - `http`: /healthz, /readyz, /metrics.

pub mod http;
pub mod metrics;

use crate::api::PostgresCluster;
use crate::lease::{self, Attempt, LeaseConfig};
use crate::reconcile;
use anyhow::{bail, Context as _, Result};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    /// `host:port` of /healthz, /readyz, /metrics.
    pub http_listen: String,
    /// Watch one namespace; `None`: all.
    pub namespace: Option<String>,
    /// `None`: no leader election (one replica only).
    pub lease: Option<LeaseConfig>,
    pub identity: String,
}

struct Ctx {
    client: Client,
    state: Arc<http::State>,
    recorder: Recorder,
    settings: reconcile::cluster::Settings,
}

/// How long after a failed reconcile to try again (the error is also an
/// Event on the cluster).
const RETRY_AFTER: Duration = Duration::from_secs(15);
const MANAGED: &str = "app.kubernetes.io/managed-by=pgwolf-controller";

pub async fn run(client: Client, opts: Options) -> Result<()> {
    // Built first for its store, which /metrics counts clusters from; it
    // watches nothing until it runs.
    let controller = controller(&client, opts.namespace.as_deref());
    let state = Arc::new(http::State {
        metrics: metrics::Metrics::new(),
        clusters: controller.store(),
        lease_ok: true.into(),
    });
    let listener = tokio::net::TcpListener::bind(&opts.http_listen)
        .await
        .with_context(|| format!("listening on {}", opts.http_listen))?;
    tokio::spawn(http::serve(state.clone(), listener));

    let lease_lost = match &opts.lease {
        Some(cfg) => {
            wait_to_lead(&client, cfg).await;
            Some(tokio::spawn(keep_leading(client.clone(), cfg.clone())))
        }
        None => None,
    };
    state.metrics.leading.set(1);
    tracing::info!(identity = %opts.identity, "reconciling");

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        state: state.clone(),
        settings: reconcile::cluster::Settings {
            postgres: Some(Default::default()),
            ..Default::default()
        },
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "pgwolf-controller".into(),
                instance: Some(opts.identity.clone()),
            },
        ),
    });
    let controller = controller
        .shutdown_on_signal()
        .run(reconcile_one, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
        });
    match lease_lost {
        Some(lost) => {
            tokio::select! {
                _ = controller => {}
                _ = lost => {
                    state.lease_ok.store(false, Ordering::Relaxed);
                    state.metrics.leading.set(0);
                    bail!("lost the leader Lease: exiting so that only the new leader writes");
                }
            }
        }
        None => controller.await,
    }
    if let Some(cfg) = &opts.lease {
        if let Err(e) = lease::release(&client, cfg).await {
            tracing::warn!(error = %e, "releasing the leader Lease");
        }
    }
    Ok(())
}

fn controller(client: &Client, namespace: Option<&str>) -> Controller<PostgresCluster> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ours = || watcher::Config::default().labels(MANAGED);
    let controller = Controller::new(
        api::<PostgresCluster>(client, namespace),
        watcher::Config::default(),
    );
    let clusters = controller.store();
    controller
        // A deleted instance pod (its preStop hook waits while it is the
        // primary): its cluster, by the instance label. Other pod events
        // (Patroni annotates its pod every loop) bring nothing.
        .watches(
            api::<Pod>(client, namespace),
            watcher::Config::default()
                .labels(&format!("{MANAGED},app.kubernetes.io/component=postgres")),
            |pod| {
                pod.metadata.deletion_timestamp.as_ref()?;
                let name = pod
                    .metadata
                    .labels
                    .as_ref()?
                    .get("app.kubernetes.io/instance")?;
                Some(ObjectRef::new(name).within(pod.metadata.namespace.as_deref()?))
            },
        )
        // A cordoned node: every cluster (the rollout reads which pods are
        // on it). Nodes are few and a cordon rare.
        .watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            move |node| {
                let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
                let all = if cordoned {
                    clusters.state()
                } else {
                    Vec::new()
                };
                all.into_iter()
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .owns(api::<StatefulSet>(client, namespace), ours())
        .owns(api::<Deployment>(client, namespace), ours())
        .owns(api::<Service>(client, namespace), ours())
        .owns(api::<Secret>(client, namespace), ours())
        .owns(api::<ConfigMap>(client, namespace), ours())
        .owns(api::<ServiceAccount>(client, namespace), ours())
        .owns(api::<Role>(client, namespace), ours())
        .owns(api::<RoleBinding>(client, namespace), ours())
        .owns(api::<PodDisruptionBudget>(client, namespace), ours())
}

async fn reconcile_one(
    cluster: Arc<PostgresCluster>,
    ctx: Arc<Ctx>,
) -> Result<Action, reconcile::Error> {
    let started = Instant::now();
    let result = reconcile::reconcile(&ctx.client, &cluster, &ctx.settings).await;
    record(&ctx.state.metrics, &result, started.elapsed());
    match result {
        Ok(outcome) => {
            if let Some(event) = archive_event(cluster.status.as_ref(), &outcome.status) {
                if let Err(pe) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
                    tracing::warn!(error = %pe, "publishing an Event");
                }
            }
            Ok(Action::requeue(outcome.requeue_after))
        }
        Err(e) => {
            let event = Event {
                type_: EventType::Warning,
                reason: "ReconcileFailed".into(),
                note: Some(truncate(&e.to_string(), 1024)),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(pe) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
                tracing::warn!(error = %pe, "publishing an Event");
            }
            Err(e)
        }
    }
}

/// A Warning Event when the WALArchiving condition turns False (its
/// message names the failing segment), a Normal one when it recovers.
pub fn archive_event(
    before: Option<&crate::api::PostgresClusterStatus>,
    after: &crate::api::PostgresClusterStatus,
) -> Option<Event> {
    let status = |s: Option<&crate::api::PostgresClusterStatus>| {
        s?.conditions
            .iter()
            .find(|c| c.type_ == reconcile::status::WAL_ARCHIVING)
            .cloned()
    };
    let now = status(Some(after))?;
    let was = status(before).map(|c| c.status);
    let (type_, reason) = match (was.as_deref(), now.status.as_str()) {
        (Some("False"), "True") => (EventType::Normal, "ArchiveRecovered"),
        (Some("True") | None, "False") => (EventType::Warning, "ArchiveFailing"),
        _ => return None,
    };
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&now.message, 1024)),
        action: "CheckArchive".into(),
        secondary: None,
    })
}

/// Counts one reconcile: its result and duration, the rollout step it took
/// or the switchover that failed.
pub fn record(
    m: &metrics::Metrics,
    result: &Result<reconcile::Outcome, reconcile::Error>,
    took: Duration,
) {
    m.duration.observe(took.as_secs_f64());
    match result {
        Ok(outcome) => {
            m.reconciles.with_label_values(&["ok"]).inc();
            m.step_taken(&outcome.step);
        }
        Err(e) => {
            m.reconciles.with_label_values(&["error"]).inc();
            m.failures.with_label_values(&[e.kind()]).inc();
            if let reconcile::Error::Rollout(r) = e {
                if let Some((why, outcome)) = r.switchover() {
                    m.switchover_failed(why, outcome);
                }
            }
        }
    }
}

fn error_policy(cluster: Arc<PostgresCluster>, e: &reconcile::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(
        cluster = %cluster.metadata.name.as_deref().unwrap_or_default(),
        namespace = %cluster.metadata.namespace.as_deref().unwrap_or_default(),
        error = %e,
        "reconcile failed"
    );
    Action::requeue(RETRY_AFTER)
}

/// An Event note is at most 1 KiB.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn renew_every(cfg: &LeaseConfig) -> Duration {
    (cfg.lease_duration / 3).max(Duration::from_secs(1))
}

async fn wait_to_lead(client: &Client, cfg: &LeaseConfig) {
    loop {
        match lease::try_acquire(client, cfg, k8s_openapi::jiff::Timestamp::now()).await {
            Ok(Attempt::Leading) => return,
            Ok(Attempt::Following(holder)) => {
                tracing::info!(holder = ?holder, "waiting for the leader Lease")
            }
            Err(e) => tracing::warn!(error = %e, "reading the leader Lease"),
        }
        tokio::time::sleep(renew_every(cfg)).await;
    }
}

/// Renews the Lease; returns once it could not for a whole lease duration
/// (or someone else holds it).
async fn keep_leading(client: Client, cfg: LeaseConfig) {
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(renew_every(&cfg)).await;
        match lease::try_acquire(&client, &cfg, k8s_openapi::jiff::Timestamp::now()).await {
            Ok(Attempt::Leading) => last_renewed = Instant::now(),
            Ok(Attempt::Following(holder)) => {
                tracing::error!(holder = ?holder, "another replica holds the leader Lease");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader Lease"),
        }
        if last_renewed.elapsed() >= cfg.lease_duration {
            tracing::error!("could not renew the leader Lease for a whole lease duration");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PostgresClusterStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn archiving(status: &str) -> PostgresClusterStatus {
        PostgresClusterStatus {
            conditions: vec![Condition {
                type_: reconcile::status::WAL_ARCHIVING.into(),
                status: status.into(),
                reason: "Test".into(),
                message: "segment 000000010000000000000004".into(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_event_when_archiving_fails_and_when_it_recovers_only() {
        let (ok, failing) = (archiving("True"), archiving("False"));
        let e = archive_event(Some(&ok), &failing).expect("a Warning");
        assert_eq!(
            (e.type_, e.reason.as_str()),
            (EventType::Warning, "ArchiveFailing")
        );
        assert!(e.note.unwrap().contains("000000010000000000000004"));
        let e = archive_event(Some(&failing), &ok).expect("a Normal");
        assert_eq!(
            (e.type_, e.reason.as_str()),
            (EventType::Normal, "ArchiveRecovered")
        );
        assert!(archive_event(Some(&failing), &failing).is_none(), "once");
        assert!(archive_event(Some(&ok), &ok).is_none());
        assert!(
            archive_event(None, &ok).is_none(),
            "no news on a first healthy look"
        );
        assert!(archive_event(None, &failing).is_some());
    }
}
