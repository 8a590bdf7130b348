//! The controller's own metrics, served on /metrics: reconciles by result,
//! failures by error kind (a fixed set: `reconcile::Error::kind`), reconcile
//! duration, and whether this replica leads. No per-cluster labels, so the
//! series count does not grow with the clusters.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: Histogram,
    pub leading: IntGauge,
}

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
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(leading.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            leading,
        }
    }

    pub fn render(&self) -> String {
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

    #[test]
    fn counters_show_in_the_text_format() {
        let m = Metrics::new();
        m.reconciles.with_label_values(&["ok"]).inc();
        m.failures.with_label_values(&["apply"]).inc_by(2);
        m.duration.observe(0.2);
        m.leading.set(1);
        let text = m.render();
        for line in [
            "pgwolf_controller_reconciles_total{result=\"ok\"} 1",
            "pgwolf_controller_reconcile_failures_total{error=\"apply\"} 2",
            "pgwolf_controller_reconcile_duration_seconds_count 1",
            "pgwolf_controller_reconcile_duration_seconds_bucket{le=\"0.25\"} 1",
            "pgwolf_controller_leading 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
