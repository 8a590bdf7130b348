//! A fixed-bucket latency histogram of relaxed atomics: one add per
//! observation, read (and rendered for /metrics) on scrape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds in microseconds: 100 µs to 10 s, then +Inf.
pub const BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 10_000_000,
];
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

pub fn bucket(us: u64) -> usize {
    BOUNDS_US.partition_point(|b| *b < us)
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, us: u64) {
        self.buckets[bucket(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Observations already sorted into buckets (a transaction's queries).
    pub fn add(&self, counts: &[u16; BUCKETS], sum_us: u64) {
        for (b, n) in self.buckets.iter().zip(counts) {
            if *n > 0 {
                b.fetch_add(u64::from(*n), Relaxed);
            }
        }
        self.sum_us.fetch_add(sum_us, Relaxed);
    }

    /// Prometheus text-format lines for one series: cumulative buckets, sum
    /// and count. `labels` is `k="v",...` (already escaped).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = match BOUNDS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        for us in [50, 100, 101, 20_000_000] {
            h.observe(us);
        }
        let mut out = String::new();
        h.render("x", "a=\"1\"", &mut out);
        assert!(out.contains("x_bucket{a=\"1\",le=\"0.0001\"} 2\n"), "{out}");
        assert!(
            out.contains("x_bucket{a=\"1\",le=\"0.00025\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{a=\"1\",le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"1\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{a=\"1\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{a=\"1\"} 20.000251\n"), "{out}");
    }
}
