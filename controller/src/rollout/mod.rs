//! Ordered rolling updates. The StatefulSet is `OnDelete`, so a changed pod
//! template restarts nothing by itself; each reconcile takes one step:
//! recreate one outdated replica once every instance is ready and
//! streaming, and when only the primary is left, pause the poolers, switch
//! over through Patroni's REST API to the updated replica with the least
//! lag, resume, and only then recreate the old primary. A scale-down that
//! would remove the primary's pod switches over first, too, and so does a
//! primary whose node is cordoned (a drain) or whose pod is being deleted,
//! before anything else.
//!
//! - `config`: Patroni's dynamic configuration (`PATCH /config`), synced
//!   before any pod is recreated so restarted members come up with it.
//! - `plan`: pure: observed pods and Patroni members → the next step.
//! - `patroni`: `GET /cluster` and `POST /switchover`.
//! - `pooler`: PAUSE / RESUME on pgwolf's admin console.

pub mod config;
pub mod patroni;
pub mod plan;
pub mod pooler;

use crate::resources::{Owner, PATRONI_PORT, POOLER_PORT};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::{Client, ResourceExt};
use plan::{Observed, Step};
use std::collections::BTreeMap;
use std::time::Duration;

/// The label the StatefulSet controller puts on each pod it creates.
const REVISION_LABEL: &str = "controller-revision-hash";

#[derive(Clone, Debug)]
pub struct Settings {
    pub patroni_port: u16,
    pub pooler_port: u16,
    /// One REST or console request.
    pub request_timeout: Duration,
    /// POST /switchover until the candidate runs as leader.
    pub switchover_timeout: Duration,
    /// PAUSE, which waits for running transactions.
    pub pause_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            patroni_port: PATRONI_PORT as u16,
            pooler_port: POOLER_PORT as u16,
            request_timeout: Duration::from_secs(5),
            // Patroni answers in ~2 s; a loaded primary's shutdown
            // checkpoint can take much longer.
            switchover_timeout: Duration::from_secs(60),
            pause_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod}: {source}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Patroni(#[from] patroni::Error),
    /// A switchover the plan chose (for a reason the metrics count) failed,
    /// or went through with a pooler left paused.
    #[error("switching over ({}): {source}", why.label())]
    Switchover {
        why: plan::Why,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("the switchover went through but RESUME failed, the pooler stays paused: {0}")]
    Resume(#[from] pooler::Error),
}

impl Error {
    /// A failed switchover's reason and what failed (`failed`: Patroni did
    /// not switch; `resume_failed`: it did, a pooler stays paused), for the
    /// metrics.
    pub fn switchover(&self) -> Option<(plan::Why, &'static str)> {
        match self {
            Error::Switchover { why, source } => Some((
                *why,
                match **source {
                    Error::Resume(_) => "resume_failed",
                    _ => "failed",
                },
            )),
            _ => None,
        }
    }
}

/// What this reconcile's step was, for the status.
#[derive(Debug, PartialEq)]
pub struct Progress {
    pub step: Step,
    /// Instance pods not yet at the StatefulSet's update revision.
    pub outdated: usize,
}

impl Progress {
    /// A rollout in progress (for the Progressing condition), if any.
    pub fn rolling(&self) -> Option<String> {
        let switching = matches!(self.step, Step::Switchover { .. });
        (self.outdated > 0 || switching).then(|| self.step.describe())
    }
}

/// Observes, plans and takes one step. `pooler_password` is the pooler
/// admin's, when the cluster has a pooler.
pub async fn step(
    client: &Client,
    owner: &Owner<'_>,
    pooler_password: Option<&str>,
    settings: &Settings,
) -> Result<Progress, Error> {
    let ns = owner.namespace.as_str();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sts: Option<StatefulSet> = Api::namespaced(client.clone(), ns)
        .get_opt(&owner.name)
        .await
        .map_err(|source| Error::List {
            what: "the StatefulSet",
            source,
        })?;
    let update_revision = sts.as_ref().and_then(|s| {
        let status = s.status.as_ref()?;
        (status.observed_generation >= s.metadata.generation)
            .then_some(status.update_revision.as_deref())
            .flatten()
    });
    let members_pods = list(&pods_api, &owner.member_selector_string(), "instance pods").await?;
    let mut pods = Vec::new();
    let mut urls = BTreeMap::new();
    let cordoned = cordoned_nodes(client, &members_pods).await;
    for p in &members_pods {
        let name = p.name_any();
        let Some(ordinal) = plan::ordinal(&owner.name, &name) else {
            continue;
        };
        if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
            urls.insert(
                name.clone(),
                format!("http://{ip}:{}", settings.patroni_port),
            );
        }
        pods.push(plan::Pod {
            ordinal,
            revision: p.labels().get(REVISION_LABEL).cloned(),
            ready: is_ready(p),
            draining: draining(p, &cordoned),
            name,
        });
    }
    pods.sort_by_key(|p| p.ordinal);
    // Ready pods' REST APIs first: they are the likeliest to answer.
    let mut order: Vec<String> = pods
        .iter()
        .filter(|p| p.ready)
        .chain(pods.iter().filter(|p| !p.ready))
        .filter_map(|p| urls.get(&p.name).cloned())
        .collect();
    order.dedup();
    let members = patroni::answering(&order, settings.request_timeout).await;
    match &members {
        Err(e) => tracing::debug!(cluster = %owner.name, "rollout: {e}"),
        // Any member writes the DCS: the one that answered.
        Ok((_, url)) => {
            let spec = &owner.cluster.spec;
            if let Some(patch) = config::sync(url, spec, settings.request_timeout).await? {
                let mut keys: Vec<String> = Vec::new();
                if let Some(m) = patch.as_object() {
                    keys.extend(m.keys().filter(|k| *k != "postgresql").cloned());
                }
                if let Some(p) = patch["postgresql"]["parameters"].as_object() {
                    keys.extend(p.keys().cloned());
                }
                tracing::info!(cluster = %owner.name, "patroni: PATCH /config {}", keys.join(", "));
            }
        }
    }
    let step = plan::plan(&Observed {
        instances: owner.cluster.spec.instances as u32,
        update_revision,
        pods: &pods,
        members: members.as_ref().ok().map(|(m, _)| m.as_slice()),
    });
    let outdated = match update_revision {
        Some(rev) => pods
            .iter()
            .filter(|p| p.revision.as_deref() != Some(rev))
            .count(),
        None => 0,
    };

    match &step {
        Step::Done | Step::Wait(_) => {}
        Step::Delete { pod, .. } => {
            tracing::info!(cluster = %owner.name, "rollout: {}", step.describe());
            // The uid precondition: never delete a pod recreated meanwhile.
            let uid = members_pods
                .iter()
                .find(|p| &p.name_any() == pod)
                .and_then(|p| p.uid());
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..Default::default()
            };
            pods_api
                .delete(pod, &params)
                .await
                .map_err(|source| Error::Delete {
                    pod: pod.clone(),
                    source,
                })?;
        }
        Step::Switchover {
            leader,
            candidate,
            why,
        } => {
            tracing::info!(cluster = %owner.name, "rollout: {}", step.describe());
            let url = urls.get(leader).cloned().unwrap_or_default();
            let consoles = match pooler_password {
                Some(pw) => poolers(&pods_api, owner, pw, settings).await?,
                None => Vec::new(),
            };
            switch_paused(&consoles, &url, leader, candidate, settings)
                .await
                .map_err(|source| Error::Switchover {
                    why: *why,
                    source: Box::new(source),
                })?;
        }
    }
    Ok(Progress { step, outdated })
}

/// Pauses every pooler it can reach, switches over, and resumes every one
/// it paused, whatever the switchover's outcome. A pooler that cannot be
/// paused does not hold the switchover back: it only costs its clients an
/// error they would have had without the pause.
pub async fn switch_paused(
    consoles: &[pooler::Console],
    url: &str,
    leader: &str,
    candidate: &str,
    settings: &Settings,
) -> Result<(), Error> {
    for c in consoles {
        if let Err(e) = pooler::pause(c, settings.pause_timeout).await {
            tracing::warn!("rollout: {e}; switching over without it");
        }
    }
    let switched = patroni::switchover(url, leader, candidate, settings.switchover_timeout).await;
    // Every console, paused or not: a PAUSE that timed out waiting for
    // transactions has still paused its pools.
    let mut resume_error = None;
    for c in consoles {
        if let Err(e) = resume_with_retries(c, settings).await {
            tracing::error!("rollout: {e}");
            resume_error = Some(e);
        }
    }
    switched?;
    match resume_error {
        Some(e) => Err(Error::Resume(e)),
        None => Ok(()),
    }
}

async fn resume_with_retries(
    c: &pooler::Console,
    settings: &Settings,
) -> Result<(), pooler::Error> {
    let mut attempt = 0;
    loop {
        match pooler::resume(c, settings.request_timeout).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= 4 => return Err(e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
        }
    }
}

/// The ready pooler pods' admin consoles.
async fn poolers(
    pods_api: &Api<Pod>,
    owner: &Owner<'_>,
    password: &str,
    settings: &Settings,
) -> Result<Vec<pooler::Console>, Error> {
    let selector = owner
        .pooler_selector()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(list(pods_api, &selector, "pooler pods")
        .await?
        .iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|host| pooler::Console {
            host,
            port: settings.pooler_port,
            user: crate::secrets::POOLER_USER.to_string(),
            password: password.to_string(),
        })
        .collect())
}

async fn list(api: &Api<Pod>, selector: &str, what: &'static str) -> Result<Vec<Pod>, Error> {
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::List { what, source })
}

/// The nodes of `pods` that are cordoned (`spec.unschedulable`, the first
/// thing `kubectl drain` does). A node that cannot be read counts as not
/// cordoned: without the permission (a controller deployed before it was
/// granted) the rollout goes on as before rather than stopping.
async fn cordoned_nodes(client: &Client, pods: &[Pod]) -> std::collections::BTreeSet<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let names: std::collections::BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
        .collect();
    let mut cordoned = std::collections::BTreeSet::new();
    for name in names {
        match nodes.get_opt(name).await {
            Ok(Some(n)) if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) => {
                cordoned.insert(name.to_string());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("rollout: reading node {name}: {e}"),
        }
    }
    cordoned
}

/// Being deleted (a preStop hook holds a deleted primary's pod), or on a
/// cordoned node (a drain evicts it next).
fn draining(p: &Pod, cordoned: &std::collections::BTreeSet<String>) -> bool {
    let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
    p.metadata.deletion_timestamp.is_some() || node.is_some_and(|n| cordoned.contains(n))
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The primary's ordinal from Patroni's leader Endpoints, for the
/// scale-down guard in `plan::replicas`.
pub fn primary_ordinal(owner: &Owner, primary: Option<&str>) -> Option<u32> {
    plan::ordinal(&owner.name, primary?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-fake-client deletes at once (no finalizers, no deletion
    /// timestamp), so the deleted-pod half is checked here.
    #[test]
    fn a_pod_being_deleted_or_on_a_cordoned_node_is_draining() {
        let pod = |json: serde_json::Value| -> Pod { serde_json::from_value(json).unwrap() };
        let cordoned = std::collections::BTreeSet::from(["node-a".to_string()]);
        let on =
            |node: &str| pod(serde_json::json!({ "spec": { "nodeName": node, "containers": [] } }));
        assert!(draining(&on("node-a"), &cordoned));
        assert!(!draining(&on("node-b"), &cordoned));
        let deleted = pod(serde_json::json!({
            "metadata": { "deletionTimestamp": "2026-12-07T12:00:00Z" },
            "spec": { "nodeName": "node-b", "containers": [] },
        }));
        assert!(draining(&deleted, &cordoned));
        assert!(
            !draining(&pod(serde_json::json!({})), &cordoned),
            "not scheduled yet"
        );
    }
}
