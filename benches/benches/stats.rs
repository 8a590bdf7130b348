//! What counting a transaction costs (issue 6: "stats are cheap"): the
//! relaxed atomic adds of `Stats::count`, once per transaction, measured
//! on one thread, on two threads sharing one pool's counters (every
//! transaction of a single-pool setup on our 2 cores: the cache lines
//! bounce), and on two threads each with its own pool's counters. Compare
//! with the ~28 µs of proxy CPU a `pgbench -S` transaction costs
//! (docs/benchmarks.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgwolf::pool::histogram::BUCKETS;
use pgwolf::pool::{Finished, Stats};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `pgbench -S` transaction in transaction mode: one Query, its answer,
/// a few hundred µs held.
fn finished(buckets: &[u16; BUCKETS], i: u64) -> Finished<'_> {
    Finished {
        queries: 1,
        received: 40,
        sent: 120,
        held_us: 180 + (i & 0x3ff),
        query_us: 150 + (i & 0x3ff),
        query_buckets: buckets,
    }
}

fn one_query_buckets() -> [u16; BUCKETS] {
    let mut b = [0; BUCKETS];
    b[pgwolf::pool::histogram::bucket(150)] = 1;
    b
}

/// `threads` threads each count `iters` transactions; the time until the
/// last is done, per transaction of one thread (so 2 threads that never
/// slow each other report the same as 1).
fn run(per_thread: &[Arc<Stats>], iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for stats in per_thread {
            s.spawn(move || {
                let buckets = one_query_buckets();
                for i in 0..iters {
                    stats.count(black_box(&finished(&buckets, i)));
                }
            });
        }
    });
    start.elapsed()
}

fn count(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats_count");
    g.throughput(Throughput::Elements(1));
    let shared = Arc::new(Stats::default());
    g.bench_function("1 thread", |b| {
        let stats = [shared.clone()];
        b.iter_custom(|iters| run(&stats, iters))
    });
    g.bench_function("2 threads, one pool", |b| {
        let stats = [shared.clone(), shared.clone()];
        b.iter_custom(|iters| run(&stats, iters))
    });
    g.bench_function("2 threads, own pools", |b| {
        let stats = [Arc::new(Stats::default()), Arc::new(Stats::default())];
        b.iter_custom(|iters| run(&stats, iters))
    });
    g.finish();
    // The adds were not optimised away.
    assert!(
        shared
            .transactions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = count
}
criterion_main!(benches);
