//! The `kubernetes` provider: Patroni's Kubernetes DCS keeps the leader's
//! address in the `<scope>` Endpoints (and its name in the `leader`
//! annotation) and each member's role in a Pod label. Both are watched, so
//! routing follows a new leader the moment Patroni publishes it, without
//! waiting for DNS or kube-proxy to catch up.

use super::{publish, Member, Role, Topology};
use crate::config::ClusterConfig;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub async fn run(
    cluster: String,
    cfg: ClusterConfig,
    tx: watch::Sender<Topology>,
    _nudge: Arc<Notify>,
    stop: CancellationToken,
) {
    // Watches need no nudging: a change arrives as it happens.
    let client = loop {
        match client(&cfg).await {
            Ok(c) => break c,
            Err(e) => {
                let t = Topology {
                    error: Some(format!("Kubernetes client: {e}")),
                    ..Topology::default()
                };
                publish(&cluster, &tx, t);
                tokio::select! {
                    _ = tokio::time::sleep(cfg.poll_interval.max(std::time::Duration::from_secs(1))) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    let ns = cfg
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let name = cfg.endpoints.clone().unwrap_or_else(|| cluster.clone());
    let selector = cfg
        .pod_selector
        .clone()
        .unwrap_or_else(|| format!("cluster-name={name}"));
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    // The watchers relist and rewatch on their own when a stream drops,
    // with client-go's backoff.
    let mut leader_events = watcher::watch_object(endpoints, &name)
        .default_backoff()
        .boxed();
    let mut pod_events = watcher::watcher(pods, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut view = View::default();
    loop {
        tokio::select! {
            ev = leader_events.next() => match ev {
                Some(Ok(obj)) => view.leader = obj,
                Some(Err(e)) => view.error = Some(format!("watching Endpoints {ns}/{name}: {e}")),
                None => return,
            },
            ev = pod_events.next() => match ev {
                Some(Ok(ev)) => view.pod_event(ev),
                Some(Err(e)) => view.error = Some(format!("watching Pods {ns} ({selector}): {e}")),
                None => return,
            },
            _ = stop.cancelled() => return,
        }
        publish(&cluster, &tx, view.topology(&cfg));
        // An error is reported until the next event shows the watch works.
        view.error = None;
    }
}

async fn client(cfg: &ClusterConfig) -> Result<Client, String> {
    crate::tls::install_default_provider();
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| e.to_string())?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// What the watches have shown so far.
#[derive(Default)]
pub struct View {
    pub leader: Option<Endpoints>,
    pub pods: BTreeMap<String, Pod>,
    /// Pods of a relist in progress, swapped in when it is done.
    relist: Option<BTreeMap<String, Pod>>,
    pub error: Option<String>,
}

impl View {
    pub fn pod_event(&mut self, ev: Event<Pod>) {
        let key = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        match ev {
            Event::Apply(p) => {
                self.pods.insert(key(&p), p);
            }
            Event::Delete(p) => {
                self.pods.remove(&key(&p));
            }
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(p) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&p), p);
            }
            Event::InitDone => {
                if let Some(pods) = self.relist.take() {
                    self.pods = pods;
                }
            }
        }
    }

    /// The leader from the Endpoints; replicas from running, ready Pods
    /// whose role label says so. Lag is not published there: unknown.
    pub fn topology(&self, cfg: &ClusterConfig) -> Topology {
        let mut members = Vec::new();
        let leader = self
            .leader
            .as_ref()
            .and_then(|e| leader_member(e, cfg.port));
        let leader_ip = leader.as_ref().map(|m| m.host.clone());
        if let Some(m) = leader {
            members.push(m);
        }
        for (name, pod) in &self.pods {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
                continue;
            };
            if Some(&ip) == leader_ip.as_ref() {
                continue;
            }
            let role_label = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&cfg.role_label))
                .map(String::as_str);
            let role = match role_label {
                Some("replica") if ready(pod) => Role::Replica,
                _ => Role::Unknown,
            };
            members.push(Member {
                name: name.clone(),
                host: ip,
                port: cfg.port,
                role,
                lag: None,
            });
        }
        Topology {
            members,
            error: self.error.clone(),
            ..Topology::default()
        }
    }
}

/// The first address of the Endpoints, as the primary. Patroni empties
/// the subsets when no member holds the leader key.
fn leader_member(e: &Endpoints, default_port: u16) -> Option<Member> {
    let subset = e
        .subsets
        .as_ref()?
        .iter()
        .find(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))?;
    let ip = subset.addresses.as_ref()?.first()?.ip.clone();
    let port = subset
        .ports
        .as_ref()
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some("postgresql"))
                .or_else(|| ports.first())
        })
        .and_then(|p| u16::try_from(p.port).ok())
        .unwrap_or(default_port);
    let name = e
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("leader"))
        .cloned()
        .unwrap_or_else(|| ip.clone());
    Some(Member {
        name,
        host: ip,
        port,
        role: Role::Primary,
        lag: None,
    })
}

fn ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_ref()
            .is_none_or(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
