//! The per-database counters PgBouncer's SHOW STATS reports, and the
//! snapshots its averages are taken over.

use super::Pool;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// One database's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub xacts: u64,
    pub queries: u64,
    pub received: u64,
    pub sent: u64,
    pub xact_us: u64,
    pub query_us: u64,
    pub wait_us: u64,
}

/// The counters of `pools`, summed per database.
pub fn totals(pools: &[Pool]) -> BTreeMap<String, Totals> {
    let mut m: BTreeMap<String, Totals> = BTreeMap::new();
    for p in pools {
        let st = p.stats();
        let t = m.entry(p.key().db.clone()).or_default();
        t.xacts += st.transactions.load(Relaxed);
        t.queries += st.queries.load(Relaxed);
        t.received += st.bytes_received.load(Relaxed);
        t.sent += st.bytes_sent.load(Relaxed);
        t.xact_us += st.xact_us.load(Relaxed);
        t.query_us += st.query_us.load(Relaxed);
        t.wait_us += st.waiters.total_us.load(Relaxed);
    }
    m
}

/// Averages over the last completed stats period, as PgBouncer reports
/// them: counts and bytes per second, times per transaction or query (µs).
fn averages(now: &Totals, then: &Totals, secs: f64) -> [u64; 7] {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let (xacts, queries) = (d(now.xacts, then.xacts), d(now.queries, then.queries));
    let per_sec = |v: u64| (v as f64 / secs.max(1.0)) as u64;
    let per = |v: u64, n: u64| v.checked_div(n).unwrap_or(0);
    [
        per_sec(xacts),
        per_sec(queries),
        per_sec(d(now.received, then.received)),
        per_sec(d(now.sent, then.sent)),
        per(d(now.xact_us, then.xact_us), xacts),
        per(d(now.query_us, then.query_us), queries),
        per(d(now.wait_us, then.wait_us), xacts),
    ]
}

/// Snapshots of the totals a period apart, for SHOW STATS's averages.
pub struct History {
    /// (taken, totals): the snapshot before the last, and the last.
    snapshots: Vec<(Instant, BTreeMap<String, Totals>)>,
}

impl Default for History {
    fn default() -> Self {
        History {
            snapshots: vec![(Instant::now(), BTreeMap::new())],
        }
    }
}

impl History {
    /// Called every second with every pool; keeps a snapshot per
    /// `period` (`stats_period`). When a period has just completed, each
    /// database's averages over it, for the log (`log_stats`).
    pub fn tick(&mut self, pools: &[Pool], period: Duration) -> Option<Vec<(String, [u64; 7])>> {
        let last = self
            .snapshots
            .last()
            .map(|s| s.0)
            .unwrap_or_else(Instant::now);
        if last.elapsed() < period {
            return None;
        }
        self.snapshots.push((Instant::now(), totals(pools)));
        if self.snapshots.len() > 2 {
            self.snapshots.remove(0);
        }
        let now = &self.snapshots.last()?.1;
        Some(
            now.iter()
                .map(|(db, t)| (db.clone(), self.window(db, t)))
                .collect(),
        )
    }

    /// PgBouncer's periodic stats line, for one database's averages.
    pub fn log_line(db: &str, a: &[u64; 7]) -> String {
        format!(
            "stats: {db}: {} xacts/s, {} queries/s, in {} B/s, out {} B/s, xact {} us, query {} us, wait {} us",
            a[0], a[1], a[2], a[3], a[4], a[5], a[6]
        )
    }

    /// `db`'s averages over the last completed period (SHOW STATS).
    pub fn window(&self, db: &str, now: &Totals) -> [u64; 7] {
        // Before the first period ends, since the start.
        let (from, to) = match self.snapshots.as_slice() {
            [a, b] => (a, Some(b)),
            [a] => (a, None),
            _ => return [0; 7],
        };
        let zero = Totals::default();
        let then = from.1.get(db).unwrap_or(&zero);
        match to {
            Some((t, snap)) => averages(
                snap.get(db).unwrap_or(&zero),
                then,
                (*t - from.0).as_secs_f64(),
            ),
            None => averages(now, then, from.0.elapsed().as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_per_second_and_per_transaction() {
        let then = Totals::default();
        let now = Totals {
            xacts: 600,
            queries: 1200,
            received: 6000,
            sent: 60000,
            xact_us: 600 * 250,
            query_us: 1200 * 100,
            wait_us: 600 * 10,
        };
        assert_eq!(
            averages(&now, &then, 60.0),
            [10, 20, 100, 1000, 250, 100, 10]
        );
        assert_eq!(
            averages(&then, &then, 60.0),
            [0; 7],
            "no traffic, no division by zero"
        );
    }
}
