//! Leader election through a `coordination.k8s.io/v1` Lease, so two
//! replicas of the controller never reconcile at once: the one holding the
//! Lease works, the other waits and takes over once the holder has not
//! renewed it for `lease_duration`.
//!
//! Every write carries the resourceVersion it read, so when two candidates
//! race for an expired Lease, the API server lets exactly one replace it
//! (the other gets 409 Conflict and stays a follower). As client-go's
//! leaderelection, the holder renews well inside the duration (a third of
//! it) and gives up leadership if a renewal fails for longer than that.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica: its pod name, unique among the candidates.
    pub identity: String,
    pub lease_duration: Duration,
}

/// One attempt's result.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease now (took it, or renewed it).
    Leading,
    /// Someone else holds it; `None` when we lost a race and do not know who.
    Following(Option<String>),
}

/// Takes the Lease if it is free or expired, renews it if it is ours.
pub async fn try_acquire(
    client: &Client,
    cfg: &LeaseConfig,
    now: Timestamp,
) -> Result<Attempt, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(spec(cfg, now, now, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Leading),
            Err(e) if is_conflict(&e) => Ok(Attempt::Following(None)),
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(cfg.identity.as_str());
    if !ours && !expired(&current, now) {
        return Ok(Attempt::Following(holder));
    }
    let transitions = current.lease_transitions.unwrap_or(0);
    lease.spec = Some(if ours {
        let acquired = current.acquire_time.map_or(now, |t| t.0);
        spec(cfg, acquired, now, transitions)
    } else {
        spec(cfg, now, now, transitions + 1)
    });
    // `lease` still carries the resourceVersion read above.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Attempt::Leading),
        Err(e) if is_conflict(&e) => Ok(Attempt::Following(None)),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (at shutdown), so a follower need not wait for it to
/// expire. Only if it is still ours.
pub async fn release(client: &Client, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn spec(cfg: &LeaseConfig, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// A Lease with no holder, no renewal, or a renewal older than its
/// duration is free to take.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    renewed
        .0
        .checked_add(SignedDuration::from_secs(secs.into()))
        .is_ok_and(|until| until < now)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
