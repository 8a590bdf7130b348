//! The controller's own metrics, served on /metrics: reconciles by result,
//! failures by error kind (a fixed set: `reconcile::Error::kind`), reconcile
//! duration, rollout steps taken and switchovers by reason and outcome,
//! clusters by condition, and whether this replica leads. No per-cluster
//! labels, so the series count does not grow with the clusters (which
//! cluster is the status's and the Events' to say).

use crate::api::PostgresCluster;
use crate::reconcile::status::{DEGRADED, PROGRESSING, READY, WAL_ARCHIVING};
use crate::rollout::plan::{Step, Why};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: Histogram,
    pub leading: IntGauge,
    /// Pods recreated and switchovers started by the rollout, by action
    /// (`rollout::plan::Step::action`).
    pub rollout_steps: IntCounterVec,
    /// By reason (update, scale_down, drain) and outcome (ok, failed,
    /// resume_failed).
    pub switchovers: IntCounterVec,
    /// Set from the watched clusters' statuses at each scrape, so a deleted
    /// cluster leaves no stale count behind.
    clusters: IntGaugeVec,
    watched: IntGauge,
}

/// `switchovers_total`'s outcomes (`rollout::Error::switchover`'s and ok).
const SWITCHOVER_OUTCOMES: [&str; 3] = ["ok", "failed", "resume_failed"];

/// The conditions counted, by status.
const CONDITIONS: [&str; 4] = [READY, PROGRESSING, DEGRADED, WAL_ARCHIVING];
const STATUSES: [&str; 2] = ["True", "False"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("pgwolf_controller".into()), None)
            .expect("static prefix is valid");
        let reconciles = IntCounterVec::new(
            Opts::new("reconciles_total", "Reconciles run, by result (ok, error)."),
            &["result"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_failures_total",
                "Failed reconciles by error kind (render, read, apply, status, not_stored).",
            ),
            &["error"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new("reconcile_duration_seconds", "Time one reconcile took.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .expect("valid metric");
        let leading = IntGauge::new(
            "leading",
            "1 while this replica holds the leader Lease (or runs without leader election).",
        )
        .expect("valid metric");
        let rollout_steps = IntCounterVec::new(
            Opts::new(
                "rollout_steps_total",
                "Rollout steps taken, by action (recreate_replica, recreate_primary, switchover).",
            ),
            &["action"],
        )
        .expect("valid metric");
        let switchovers = IntCounterVec::new(
            Opts::new(
                "switchovers_total",
                "Switchovers the controller ran, by reason (update, scale_down, drain) and \
                 outcome (ok, failed, resume_failed: switched, a pooler stayed paused).",
            ),
            &["reason", "outcome"],
        )
        .expect("valid metric");
        let clusters = IntGaugeVec::new(
            Opts::new(
                "clusters",
                "PostgresClusters this replica watches, by condition (Ready, Progressing, \
                 Degraded, WALArchiving) and its status (True, False).",
            ),
            &["condition", "status"],
        )
        .expect("valid metric");
        let watched = IntGauge::new("clusters_watched", "PostgresClusters this replica watches.")
            .expect("valid metric");
        // Every label value at 0 from the start: a rate() over a counter
        // that appears at its first increment misses that increment, and
        // an alert on a series that does not exist yet cannot be tested.
        for result in ["ok", "error"] {
            reconciles.with_label_values(&[result]);
        }
        for kind in crate::reconcile::Error::KINDS {
            failures.with_label_values(&[kind]);
        }
        for action in Step::ACTIONS {
            rollout_steps.with_label_values(&[action]);
        }
        for why in Why::ALL {
            for outcome in SWITCHOVER_OUTCOMES {
                switchovers.with_label_values(&[why.label(), outcome]);
            }
        }
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(leading.clone()),
            Box::new(rollout_steps.clone()),
            Box::new(switchovers.clone()),
            Box::new(clusters.clone()),
            Box::new(watched.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            leading,
            rollout_steps,
            switchovers,
            clusters,
            watched,
        }
    }

    /// Counts the rollout step a reconcile took (a switchover that was
    /// taken went through: a failed one is counted by `switchover_failed`).
    pub fn step_taken(&self, step: &Step) {
        let Some(action) = step.action() else {
            return;
        };
        self.rollout_steps.with_label_values(&[action]).inc();
        if let Step::Switchover { why, .. } = step {
            self.switchovers
                .with_label_values(&[why.label(), "ok"])
                .inc();
        }
    }

    pub fn switchover_failed(&self, why: Why, outcome: &str) {
        self.switchovers
            .with_label_values(&[why.label(), outcome])
            .inc();
    }

    /// The text format, with the cluster counts taken from `clusters`.
    pub fn render<'a>(&self, clusters: impl IntoIterator<Item = &'a PostgresCluster>) -> String {
        let mut counts = [[0i64; STATUSES.len()]; CONDITIONS.len()];
        let mut all = 0;
        for c in clusters {
            all += 1;
            let conditions = c.status.as_ref().map(|s| s.conditions.as_slice());
            for k in conditions.unwrap_or_default() {
                let at = |list: &[&str], v: &str| list.iter().position(|x| *x == v);
                if let (Some(i), Some(j)) = (at(&CONDITIONS, &k.type_), at(&STATUSES, &k.status)) {
                    counts[i][j] += 1;
                }
            }
        }
        self.watched.set(all);
        for (name, by_status) in CONDITIONS.iter().zip(counts) {
            for (status, n) in STATUSES.iter().zip(by_status) {
                self.clusters.with_label_values(&[name, status]).set(n);
            }
        }
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding to a Vec cannot fail");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::PostgresClusterStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn cluster(conditions: &[(&str, &str)]) -> PostgresCluster {
        let mut c: PostgresCluster =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "main"}, "spec": {}}))
                .expect("a minimal cluster");
        c.status = Some(PostgresClusterStatus {
            conditions: conditions
                .iter()
                .map(|(t, s)| Condition {
                    type_: t.to_string(),
                    status: s.to_string(),
                    reason: "Test".into(),
                    message: String::new(),
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: None,
                })
                .collect(),
            ..Default::default()
        });
        c
    }

    #[test]
    fn counters_show_in_the_text_format() {
        let m = Metrics::new();
        m.reconciles.with_label_values(&["ok"]).inc();
        m.failures.with_label_values(&["apply"]).inc_by(2);
        m.duration.observe(0.2);
        m.leading.set(1);
        m.step_taken(&Step::Delete {
            pod: "main-1".into(),
            primary: false,
        });
        m.step_taken(&Step::Wait("not ready".into()));
        m.step_taken(&Step::Switchover {
            leader: "main-0".into(),
            candidate: "main-1".into(),
            why: Why::Drain,
        });
        m.switchover_failed(Why::Update, "failed");
        let text = m.render(&[
            cluster(&[(READY, "True"), (DEGRADED, "False")]),
            cluster(&[]),
        ]);
        for line in [
            "pgwolf_controller_reconciles_total{result=\"ok\"} 1",
            "pgwolf_controller_reconcile_failures_total{error=\"apply\"} 2",
            "pgwolf_controller_reconcile_duration_seconds_count 1",
            "pgwolf_controller_reconcile_duration_seconds_bucket{le=\"0.25\"} 1",
            "pgwolf_controller_leading 1",
            "pgwolf_controller_rollout_steps_total{action=\"recreate_replica\"} 1",
            "pgwolf_controller_rollout_steps_total{action=\"switchover\"} 1",
            "pgwolf_controller_switchovers_total{outcome=\"ok\",reason=\"drain\"} 1",
            "pgwolf_controller_switchovers_total{outcome=\"failed\",reason=\"update\"} 1",
            "pgwolf_controller_clusters{condition=\"Ready\",status=\"True\"} 1",
            "pgwolf_controller_clusters{condition=\"Degraded\",status=\"True\"} 0",
            "pgwolf_controller_clusters{condition=\"Degraded\",status=\"False\"} 1",
            "pgwolf_controller_clusters{condition=\"Progressing\",status=\"True\"} 0",
            "pgwolf_controller_clusters{condition=\"WALArchiving\",status=\"False\"} 0",
            "pgwolf_controller_clusters_watched 2",
            "pgwolf_controller_reconcile_failures_total{error=\"users\"} 0",
            "pgwolf_controller_switchovers_total{outcome=\"resume_failed\",reason=\"scale_down\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
