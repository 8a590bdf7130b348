//! A pool's counters: SHOW POOLS, SHOW STATS and /metrics read them; each
//! transaction adds to them once.

use super::histogram;
use super::wait::Waiters;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Counters for the admin console and metrics (later issues).
#[derive(Default)]
pub struct Stats {
    /// Clients waiting for a slot (SHOW POOLS `cl_waiting`, `maxwait`,
    /// SHOW STATS wait time); touched only on the waiting path.
    pub waiters: Waiters,
    pub active: AtomicU32,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Idle connections closed for failing `server_check_query`.
    pub check_failures: AtomicU64,
    /// Clients logged in to this pool now.
    pub clients: AtomicU32,
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Microseconds: server connections checked out, servers answering.
    pub xact_us: AtomicU64,
    pub query_us: AtomicU64,
    /// Microseconds new connections waited for a member of their role.
    pub failover_wait_us: AtomicU64,
    /// Those waits by length, each connection that waited at all.
    pub failover_hist: histogram::Histogram,
    /// Durations of transactions (check-out to release) and of requests
    /// (a Query or a batch up to Sync, to its ReadyForQuery).
    pub xact_hist: histogram::Histogram,
    pub query_hist: histogram::Histogram,
    pub prepared: crate::prepared::statements::Counters,
}

/// One finished transaction as the client's pump tallied it.
pub struct Finished<'a> {
    pub queries: u32,
    pub received: u64,
    pub sent: u64,
    /// Check-out to release.
    pub held_us: u64,
    /// Time the server spent answering, and its requests by bucket.
    pub query_us: u64,
    pub query_buckets: &'a [u16; histogram::BUCKETS],
}

impl Stats {
    /// One transaction's share of SHOW STATS and /metrics: a few relaxed
    /// adds, once per transaction (benches/benches/stats.rs measures them).
    pub fn count(&self, t: &Finished) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.queries.fetch_add(t.queries.into(), Ordering::Relaxed);
        self.bytes_received.fetch_add(t.received, Ordering::Relaxed);
        self.bytes_sent.fetch_add(t.sent, Ordering::Relaxed);
        self.xact_us.fetch_add(t.held_us, Ordering::Relaxed);
        self.query_us.fetch_add(t.query_us, Ordering::Relaxed);
        self.xact_hist.observe(t.held_us);
        self.query_hist.add(t.query_buckets, t.query_us);
    }
}
