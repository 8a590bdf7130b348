//! The rollout's decisions, pure: from what the pods and Patroni report to
//! the one next step. Re-run on every reconcile, it needs no memory of its
//! own: the state of a rollout is the pods' revisions and Patroni's roles.

use pgwolf::topology::{Member, Role};

/// One instance pod, as the rollout needs to see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    pub name: String,
    /// From `<statefulset>-<ordinal>`.
    pub ordinal: u32,
    /// `controller-revision-hash`: the StatefulSet revision it runs.
    pub revision: Option<String>,
    /// Ready condition true and not being deleted.
    pub ready: bool,
    /// About to go: its node is cordoned (a drain evicts it next) or the
    /// pod is being deleted. The primary must not be in such a pod, nor
    /// should a switchover pick one.
    pub draining: bool,
}

#[derive(Debug)]
pub struct Observed<'a> {
    /// `spec.instances`.
    pub instances: u32,
    /// The StatefulSet's `status.updateRevision`, only once its status has
    /// caught up with its spec (observedGeneration ≥ generation): before
    /// that a changed template still shows the old revision here.
    pub update_revision: Option<&'a str>,
    pub pods: &'a [Pod],
    /// Patroni's `GET /cluster`; None when no member's REST API answered.
    pub members: Option<&'a [Member]>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Every instance runs the current revision and the primary is where
    /// `instances` keeps it.
    Done,
    /// Nothing to do until the cluster is healthy again.
    Wait(String),
    /// Delete this pod; its StatefulSet recreates it at the new revision.
    Delete { pod: String, primary: bool },
    Switchover {
        leader: String,
        candidate: String,
        why: Why,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    /// The primary runs an old revision and every replica is updated.
    Update,
    /// Scaling down would remove the pod the primary runs in.
    ScaleDown,
    /// The primary's node is being drained, or its pod deleted.
    Drain,
}

impl Why {
    pub const ALL: [Why; 3] = [Why::Update, Why::ScaleDown, Why::Drain];

    /// A metric label (bounded: one per variant).
    pub fn label(self) -> &'static str {
        match self {
            Why::Update => "update",
            Why::ScaleDown => "scale_down",
            Why::Drain => "drain",
        }
    }
}

impl Step {
    /// Every `action`.
    pub const ACTIONS: [&'static str; 3] = ["recreate_replica", "recreate_primary", "switchover"];

    /// A metric label for a step that acts; `None` for one that waits.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            Step::Done | Step::Wait(_) => None,
            Step::Delete { primary: false, .. } => Some("recreate_replica"),
            Step::Delete { primary: true, .. } => Some("recreate_primary"),
            Step::Switchover { .. } => Some("switchover"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Step::Done => "every instance is up to date".into(),
            Step::Wait(why) => format!("waiting: {why}"),
            Step::Delete {
                pod,
                primary: false,
            } => {
                format!("recreating replica {pod} at the new revision")
            }
            Step::Delete { pod, primary: true } => {
                format!("recreating {pod}, the only instance, at the new revision")
            }
            Step::Switchover {
                leader,
                candidate,
                why,
            } => {
                let why = match why {
                    Why::Update => "every replica is updated",
                    Why::ScaleDown => "scaling down would remove the primary's pod",
                    Why::Drain => "the primary's node is drained or its pod deleted",
                };
                format!("switching over from {leader} to {candidate}: {why}")
            }
        }
    }
}

pub fn plan(o: &Observed) -> Step {
    let Some(members) = o.members else {
        return Step::Wait("no member's Patroni REST API answered".into());
    };
    let leaders: Vec<&Member> = members.iter().filter(|m| m.role == Role::Primary).collect();
    let [leader] = leaders[..] else {
        return Step::Wait(format!(
            "Patroni reports {} running leaders, not one",
            leaders.len()
        ));
    };
    let pod = |name: &str| o.pods.iter().find(|p| p.name == name);
    let member = |name: &str| members.iter().find(|m| m.name == name);
    let Some(leader_pod) = pod(&leader.name) else {
        return Step::Wait(format!("the leader {} is no pod of ours", leader.name));
    };
    // A healthy replica: its pod ready, Patroni streaming to it with a
    // known lag.
    let streaming = |p: &Pod| {
        p.ready
            && member(&p.name)
                .is_some_and(|m| m.role == Role::Replica && m.lag.is_some_and(|l| l != u64::MAX))
    };
    // Never a pod that is about to go itself.
    let least_lag = |candidates: Vec<&Pod>| {
        candidates
            .into_iter()
            .filter(|p| !p.draining)
            .min_by_key(|p| (member(&p.name).and_then(|m| m.lag), p.ordinal))
            .map(|p| p.name.clone())
    };

    // Before anything else: the primary's pod is about to go (a node
    // drain evicts it once the primary's PodDisruptionBudget lets it, a
    // deleted pod's preStop hook waits for this). A switchover with the
    // pooler paused costs clients a pause; losing the pod costs them a
    // failover.
    if leader_pod.draining {
        let others = o
            .pods
            .iter()
            .filter(|p| p.name != leader.name && streaming(p))
            .collect();
        return match least_lag(others) {
            Some(candidate) => Step::Switchover {
                leader: leader.name.clone(),
                candidate,
                why: Why::Drain,
            },
            None => Step::Wait(format!(
                "the primary {} is on a drained node or being deleted, and no replica elsewhere is streaming",
                leader.name
            )),
        };
    }

    if leader_pod.ordinal >= o.instances {
        let staying = o.pods.iter().filter(|p| p.ordinal < o.instances);
        return match least_lag(staying.filter(|p| streaming(p)).collect()) {
            Some(candidate) => Step::Switchover {
                leader: leader.name.clone(),
                candidate,
                why: Why::ScaleDown,
            },
            None => Step::Wait(format!(
                "the primary {} is in a pod scaling down removes and no staying replica is streaming",
                leader.name
            )),
        };
    }

    // Pods past `instances` are on their way out; the rest must be all
    // there and healthy before one more is taken down.
    let staying: Vec<&Pod> = o.pods.iter().filter(|p| p.ordinal < o.instances).collect();
    if staying.len() < o.instances as usize {
        return Step::Wait(format!(
            "{} of {} instance pods exist",
            staying.len(),
            o.instances
        ));
    }
    if let Some(p) = staying.iter().find(|p| !p.ready) {
        return Step::Wait(format!("pod {} is not ready", p.name));
    }
    if let Some(p) = staying
        .iter()
        .find(|p| p.name != leader.name && !streaming(p))
    {
        return Step::Wait(format!("replica {} is not streaming", p.name));
    }
    let Some(revision) = o.update_revision else {
        return Step::Wait("the StatefulSet's status has not caught up with its spec".into());
    };
    let outdated = |p: &&&Pod| p.revision.as_deref() != Some(revision);
    // Highest ordinal first, as the StatefulSet controller would.
    if let Some(p) = staying
        .iter()
        .filter(|p| p.name != leader.name)
        .filter(outdated)
        .max_by_key(|p| p.ordinal)
    {
        return Step::Delete {
            pod: p.name.clone(),
            primary: false,
        };
    }
    if outdated(&&leader_pod) {
        if o.instances == 1 {
            // Nobody to switch over to: the update costs an outage, as
            // with any single-instance database.
            return Step::Delete {
                pod: leader.name.clone(),
                primary: true,
            };
        }
        let updated = staying
            .iter()
            .copied()
            .filter(|p| p.name != leader.name)
            .collect();
        return match least_lag(updated) {
            Some(candidate) => Step::Switchover {
                leader: leader.name.clone(),
                candidate,
                why: Why::Update,
            },
            None => Step::Wait("no updated replica to switch over to".into()),
        };
    }
    Step::Done
}

/// `<statefulset>-<ordinal>` → ordinal.
pub fn ordinal(statefulset: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(statefulset)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The replicas to apply to the StatefulSet: `instances`, except that a
/// scale-down waits while the primary is in a pod it would remove (the
/// rollout switches over first).
pub fn replicas(instances: u32, current: Option<u32>, primary_ordinal: Option<u32>) -> u32 {
    match (current, primary_ordinal) {
        (Some(current), Some(p)) if p >= instances && current > instances => current.max(p + 1),
        _ => instances,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(revs: &[&str]) -> Vec<Pod> {
        revs.iter()
            .enumerate()
            .map(|(i, r)| Pod {
                name: format!("main-{i}"),
                ordinal: i as u32,
                revision: Some(r.to_string()),
                ready: true,
                draining: false,
            })
            .collect()
    }

    fn members(n: usize, leader: usize, lags: &[u64]) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                name: format!("main-{i}"),
                host: "10.0.0.1".into(),
                port: 5432,
                role: if i == leader {
                    Role::Primary
                } else {
                    Role::Replica
                },
                lag: (i != leader).then(|| lags.get(i).copied().unwrap_or(0)),
            })
            .collect()
    }

    fn plan_of(instances: u32, pods: &[Pod], members: &[Member]) -> Step {
        plan(&Observed {
            instances,
            update_revision: Some("new"),
            pods,
            members: Some(members),
        })
    }

    #[test]
    fn replicas_go_first_highest_ordinal_first_then_a_switchover_then_the_old_primary() {
        let m = members(3, 1, &[0, 0, 0]);
        let mut p = pods(&["old", "old", "old"]);
        let del = |pod: &str| Step::Delete {
            pod: pod.into(),
            primary: false,
        };
        assert_eq!(plan_of(3, &p, &m), del("main-2"));
        p[2].revision = Some("new".into());
        assert_eq!(plan_of(3, &p, &m), del("main-0"));
        p[0].revision = Some("new".into());
        let switch = plan_of(3, &p, &m);
        assert!(
            matches!(&switch, Step::Switchover { leader, why: Why::Update, .. } if leader == "main-1"),
            "{switch:?}"
        );
        // After the switchover the old primary is an outdated replica.
        let m = members(3, 0, &[0, 0, 0]);
        assert_eq!(plan_of(3, &p, &m), del("main-1"));
        p[1].revision = Some("new".into());
        assert_eq!(plan_of(3, &p, &m), Step::Done);
    }

    #[test]
    fn the_candidate_is_the_updated_replica_with_the_least_lag() {
        let m = members(3, 0, &[0, 4096, 16]);
        let p = pods(&["old", "new", "new"]);
        assert_eq!(
            plan_of(3, &p, &m),
            Step::Switchover {
                leader: "main-0".into(),
                candidate: "main-2".into(),
                why: Why::Update
            }
        );
    }

    #[test]
    fn nothing_is_taken_down_while_any_instance_is_unhealthy() {
        let m = members(3, 0, &[0, 0, 0]);
        let mut p = pods(&["old", "old", "new"]);
        p[2].ready = false;
        assert!(matches!(plan_of(3, &p, &m), Step::Wait(w) if w.contains("main-2")));

        let p = pods(&["old", "old", "new"]);
        let mut lagging = members(3, 0, &[0, 0, 0]);
        lagging[2].role = Role::Unknown;
        assert!(matches!(plan_of(3, &p, &lagging), Step::Wait(w) if w.contains("main-2")));
        lagging[2].role = Role::Replica;
        lagging[2].lag = Some(u64::MAX);
        assert!(matches!(plan_of(3, &p, &lagging), Step::Wait(_)));

        assert!(matches!(plan_of(3, &p[..2], &m), Step::Wait(w) if w.contains("2 of 3")));
        let no_leader = members(3, 9, &[0, 0, 0]);
        assert!(matches!(plan_of(3, &p, &no_leader), Step::Wait(_)));
        let unknown = plan(&Observed {
            instances: 3,
            update_revision: Some("new"),
            pods: &p,
            members: None,
        });
        assert!(matches!(unknown, Step::Wait(_)));
    }

    #[test]
    fn a_stale_statefulset_status_starts_nothing() {
        let m = members(2, 0, &[0, 0]);
        let p = pods(&["old", "old"]);
        let o = Observed {
            instances: 2,
            update_revision: None,
            pods: &p,
            members: Some(&m),
        };
        assert!(matches!(plan(&o), Step::Wait(w) if w.contains("caught up")));
    }

    #[test]
    fn a_single_instance_is_recreated_without_a_switchover() {
        let m = members(1, 0, &[]);
        let p = pods(&["old"]);
        assert_eq!(
            plan_of(1, &p, &m),
            Step::Delete {
                pod: "main-0".into(),
                primary: true
            }
        );
    }

    #[test]
    fn scaling_down_moves_the_primary_out_of_the_removed_pods_first() {
        let m = members(3, 2, &[64, 0, 0]);
        let p = pods(&["new", "new", "new"]);
        assert_eq!(
            plan_of(2, &p, &m),
            Step::Switchover {
                leader: "main-2".into(),
                candidate: "main-1".into(),
                why: Why::ScaleDown
            }
        );
        assert_eq!(replicas(2, Some(3), Some(2)), 3);
        // Once main-1 leads, the StatefulSet may shrink and main-2 is
        // no concern of the rollout any more.
        assert_eq!(replicas(2, Some(3), Some(1)), 2);
        let m = members(3, 1, &[0, 0, 0]);
        assert_eq!(plan_of(2, &p, &m), Step::Done);
        // Scaling up, or no primary known: instances as declared.
        assert_eq!(replicas(3, Some(2), Some(1)), 3);
        assert_eq!(replicas(2, Some(3), None), 2);
    }

    #[test]
    fn ordinals_come_from_the_pod_name() {
        assert_eq!(ordinal("main", "main-12"), Some(12));
        assert_eq!(ordinal("main", "main-pooler-x"), None);
        assert_eq!(ordinal("main", "mainx-1"), None);
    }

    #[test]
    fn a_drained_primary_switches_over_to_a_replica_on_a_schedulable_node() {
        let m = members(3, 0, &[0, 0, 64]);
        let mut p = pods(&["new", "new", "new"]);
        p[0].draining = true;
        // main-1 has the least lag but is on a cordoned node too.
        p[1].draining = true;
        assert_eq!(
            plan_of(3, &p, &m),
            Step::Switchover {
                leader: "main-0".into(),
                candidate: "main-2".into(),
                why: Why::Drain
            }
        );
        // Before any update: a drain does not wait for the rollout.
        let outdated = pods(&["old", "old", "old"]);
        let mut outdated_draining = outdated.clone();
        outdated_draining[0].draining = true;
        assert!(matches!(
            plan_of(3, &outdated_draining, &m),
            Step::Switchover {
                why: Why::Drain,
                ..
            }
        ));
        // Nobody to switch to: wait, and say why.
        p[2].draining = true;
        assert!(
            matches!(plan_of(3, &p, &m), Step::Wait(w) if w.contains("drained")),
            "{:?}",
            plan_of(3, &p, &m)
        );
        // An update never picks a draining replica either.
        let mut q = pods(&["old", "new", "new"]);
        q[2].draining = true;
        let lagging = members(3, 0, &[0, 4096, 0]);
        assert_eq!(
            plan_of(3, &q, &lagging),
            Step::Switchover {
                leader: "main-0".into(),
                candidate: "main-1".into(),
                why: Why::Update
            }
        );
    }
}
