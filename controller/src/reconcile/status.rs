//! The status a cluster reports, computed from what a reconcile observed:
//! the StatefulSet, Patroni's leader Endpoints and the pooler Deployment.
//! Pure, so every condition can be tested without an API server.

use crate::api::{PostgresCluster, PostgresClusterStatus};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// With `spec.backups`: whether the primary's archive_command succeeds.
pub const WAL_ARCHIVING: &str = "WALArchiving";

/// What the reconcile found; `None` where the object does not exist (yet).
#[derive(Default)]
pub struct Observed<'a> {
    pub statefulset: Option<&'a StatefulSet>,
    /// `<cluster>`: Patroni's leader Endpoints.
    pub leader: Option<&'a Endpoints>,
    pub pooler: Option<&'a Deployment>,
    /// What a rolling update in progress is doing.
    pub rollout: Option<String>,
    /// With `spec.backups` and a primary: `pg_stat_archiver` there, or why
    /// it could not be read (the condition then keeps its last state).
    pub archive: Option<Result<crate::postgres::archive::Archiver, String>>,
}

/// The pod holding the leader lock, as Patroni's Kubernetes DCS records it
/// in the `<cluster>` Endpoints' annotations: `leader`, renewed at
/// `renewTime` for `ttl` seconds. A lock past its TTL is held by no one:
/// Patroni leaves the annotation of a dead leader in place until another
/// member takes the lock.
pub fn primary(leader: &Endpoints, now: &Time) -> Option<String> {
    let annotations = leader.metadata.annotations.as_ref()?;
    let name = annotations.get("leader").filter(|l| !l.is_empty())?;
    let renewed = annotations
        .get("renewTime")
        .and_then(|t| t.parse::<Timestamp>().ok());
    let ttl = annotations.get("ttl").and_then(|t| t.parse::<i64>().ok());
    if let (Some(renewed), Some(ttl)) = (renewed, ttl) {
        let expires = renewed.checked_add(SignedDuration::from_secs(ttl)).ok()?;
        if expires < now.0 {
            return None;
        }
    }
    Some(name.clone())
}

/// The new status. A condition whose state did not change keeps its
/// `lastTransitionTime` from `previous`; `now` stamps the ones that did.
pub fn compute(cluster: &PostgresCluster, observed: &Observed, now: Time) -> PostgresClusterStatus {
    let spec = &cluster.spec;
    let generation = cluster.metadata.generation;
    let sts_status = observed.statefulset.and_then(|s| s.status.as_ref());
    let ready_instances = sts_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let primary = observed.leader.and_then(|l| primary(l, &now));
    let pooler_ready = observed
        .pooler
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let pooler_wanted = spec.pooler.as_ref().map_or(0, |p| p.replicas);

    // The StatefulSet and Deployment have not yet acted on their latest spec.
    let sts_behind = observed
        .statefulset
        .is_none_or(|s| sts_status.and_then(|st| st.observed_generation) < s.metadata.generation);
    let pooler_behind = spec.pooler.is_some()
        && observed.pooler.is_none_or(|d| {
            let st = d.status.as_ref();
            st.and_then(|st| st.observed_generation) < d.metadata.generation
                || st.and_then(|st| st.updated_replicas).unwrap_or(0) < pooler_wanted
        });

    let (ready, ready_reason, ready_message) = if primary.is_none() {
        (
            false,
            "NoPrimary",
            "no member holds Patroni's leader lock".to_string(),
        )
    } else if ready_instances < spec.instances {
        (
            false,
            "InstancesNotReady",
            format!("{ready_instances} of {} instances ready", spec.instances),
        )
    } else if pooler_ready < pooler_wanted {
        (
            false,
            "PoolerNotReady",
            format!("{pooler_ready} of {pooler_wanted} pooler replicas ready"),
        )
    } else {
        (
            true,
            "AllReady",
            "all instances and pooler replicas are ready".to_string(),
        )
    };
    let progressing = sts_behind
        || pooler_behind
        || observed.rollout.is_some()
        || (!ready && ready_reason != "NoPrimary");
    let (degraded, degraded_reason, degraded_message) = if primary.is_none() && ready_instances > 0
    {
        (
            true,
            "NoPrimary",
            "instances run but none is primary: writes fail".to_string(),
        )
    } else if pooler_wanted > 0 && pooler_ready == 0 && primary.is_some() {
        (true, "PoolerDown", "no pooler replica is ready".to_string())
    } else if let Some(Ok(a)) = observed
        .archive
        .as_ref()
        .filter(|a| matches!(a, Ok(a) if a.failing()))
    {
        // A failing archive loses nothing yet, but a restore can only
        // reach the last archived segment, and pg_wal grows until it
        // succeeds.
        (true, "ArchiveFailing", a.describe())
    } else {
        (false, "AsExpected", String::new())
    };

    let previous = cluster
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" }.to_string();
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    let mut conditions = vec![
        condition(READY, ready, ready_reason, ready_message),
        condition(
            PROGRESSING,
            progressing,
            match (&observed.rollout, progressing) {
                (Some(_), _) => "RollingUpdate",
                (None, true) => "Reconciling",
                (None, false) => "Reconciled",
            },
            observed.rollout.clone().unwrap_or_default(),
        ),
        condition(DEGRADED, degraded, degraded_reason, degraded_message),
    ];
    match &observed.archive {
        Some(Ok(a)) => conditions.push(condition(
            WAL_ARCHIVING,
            !a.failing(),
            if a.failing() {
                "ArchiveFailing"
            } else {
                "Archiving"
            },
            a.describe(),
        )),
        // Unread this time: as it was.
        Some(Err(_)) => {
            conditions.extend(previous.iter().find(|c| c.type_ == WAL_ARCHIVING).cloned())
        }
        None => {}
    }
    PostgresClusterStatus {
        conditions,
        observed_generation: generation,
        primary,
        ready_instances,
        pooler_ready_replicas: pooler_ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster;
    use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn sts(ready: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                ready_replicas: Some(ready),
                replicas: ready,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn leader(pod: &str) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([("leader".to_string(), pod.to_string())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pooler(ready: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                ready_replicas: Some(ready),
                updated_replicas: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn get<'a>(s: &'a PostgresClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_new_cluster_progresses_then_is_ready() {
        // test_cluster: 3 instances and a pooler of 2 replicas.
        let mut c = test_cluster("main");
        let s = compute(&c, &Observed::default(), at(100));
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "NoPrimary");
        assert_eq!(get(&s, PROGRESSING).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "False", "nothing runs yet");
        assert_eq!(s.observed_generation, Some(1));

        c.status = Some(s);
        let (set, lead, pool) = (sts(3), leader("main-0"), pooler(2));
        let observed = Observed {
            statefulset: Some(&set),
            leader: Some(&lead),
            pooler: Some(&pool),
            ..Default::default()
        };
        let s = compute(&c, &observed, at(200));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, READY).last_transition_time, at(200));
        assert_eq!(get(&s, PROGRESSING).status, "False");
        // Degraded stayed False: its transition time is the first one.
        assert_eq!(get(&s, DEGRADED).last_transition_time, at(100));
        assert_eq!(s.primary.as_deref(), Some("main-0"));
        assert_eq!((s.ready_instances, s.pooler_ready_replicas), (3, 2));
    }

    #[test]
    fn a_lost_primary_degrades_and_a_missing_replica_only_progresses() {
        let c = test_cluster("main");
        let (set, no_leader, pool) = (sts(3), leader(""), pooler(2));
        let s = compute(
            &c,
            &Observed {
                statefulset: Some(&set),
                leader: Some(&no_leader),
                pooler: Some(&pool),
                ..Default::default()
            },
            at(1),
        );
        assert_eq!(get(&s, DEGRADED).status, "True");
        assert_eq!(get(&s, DEGRADED).reason, "NoPrimary");
        assert_eq!(s.primary, None);

        let (two, lead) = (sts(2), leader("main-1"));
        let s = compute(
            &c,
            &Observed {
                statefulset: Some(&two),
                leader: Some(&lead),
                pooler: Some(&pool),
                ..Default::default()
            },
            at(1),
        );
        assert_eq!(get(&s, READY).reason, "InstancesNotReady");
        assert_eq!(get(&s, READY).message, "2 of 3 instances ready");
        assert_eq!(get(&s, PROGRESSING).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "False");
    }

    #[test]
    fn a_leader_lock_past_its_ttl_names_no_primary() {
        let mut lock = leader("main-0");
        let a = lock.metadata.annotations.as_mut().unwrap();
        // Patroni writes Python's isoformat.
        a.insert(
            "renewTime".into(),
            "1970-01-01T00:01:40.123456+00:00".into(),
        );
        a.insert("ttl".into(), "30".into());
        assert_eq!(primary(&lock, &at(130)).as_deref(), Some("main-0"));
        assert_eq!(primary(&lock, &at(131)), None);
        assert_eq!(primary(&leader(""), &at(0)), None);
    }

    #[test]
    fn a_pooler_with_no_ready_replica_degrades() {
        let c = test_cluster("main");
        let (set, lead, pool) = (sts(3), leader("main-0"), pooler(0));
        let s = compute(
            &c,
            &Observed {
                statefulset: Some(&set),
                leader: Some(&lead),
                pooler: Some(&pool),
                ..Default::default()
            },
            at(1),
        );
        assert_eq!(get(&s, READY).reason, "PoolerNotReady");
        assert_eq!(get(&s, DEGRADED).reason, "PoolerDown");
    }

    #[test]
    fn a_statefulset_behind_its_spec_is_progressing_even_when_ready() {
        let c = test_cluster("main");
        let mut set = sts(3);
        set.metadata.generation = Some(2);
        let (lead, pool) = (leader("main-0"), pooler(2));
        let s = compute(
            &c,
            &Observed {
                statefulset: Some(&set),
                leader: Some(&lead),
                pooler: Some(&pool),
                ..Default::default()
            },
            at(1),
        );
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, PROGRESSING).status, "True");
    }
}
