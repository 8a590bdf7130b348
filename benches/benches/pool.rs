//! Pool check-out and check-in under contention: N tasks loop
//! `checkout` -> `release` on a pool of fixed size whose idle stack was
//! seeded with loopback sockets, so no server is involved. Reported as
//! checkouts per second over all tasks.
//!
//! The "server" end of each socket is held here and never written to, so
//! `is_alive` on check-out finds it idle, as it would a quiet server.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgwolf::config::PoolMode;
use pgwolf::pool::{Pool, PoolKey, PoolSettings, SharedLimits};
use pgwolf::server::{ServerConn, ServerTarget};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const POOL_SIZES: [u32; 2] = [8, 32];
const TASKS: [u64; 3] = [1, 16, 128];

/// The config defaults that the check-out path reads (query_wait_timeout,
/// server_lifetime), so the timer and expiry checks are measured too. The
/// target is a closed port: if the bench ever drained the idle stack and the
/// pool tried to connect, it fails loudly instead of measuring connects.
fn settings(size: u32) -> PoolSettings {
    PoolSettings {
        target: ServerTarget {
            host: "127.0.0.1".to_string(),
            port: 1,
            dbname: "bench".to_string(),
            user: "bench".to_string(),
            secret: None,
            client_keys: None,
            startup: Vec::new(),
            tls: Default::default(),
            connect_timeout: Duration::from_millis(100),
            login_timeout: Duration::from_millis(100),
            tcp: Default::default(),
            dns: Default::default(),
            balance: Default::default(),
        },
        mode: PoolMode::Transaction,
        size,
        min_size: 0,
        reserve_size: 0,
        reserve_timeout: Duration::from_secs(5),
        query_wait_timeout: Duration::from_secs(120),
        lifetime: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(600),
        reset_query: None,
        check: None,
        route: None,
    }
}

/// A pool holding `size` idle connections, and the far ends of their
/// sockets, which must outlive the pool's use.
async fn seeded_pool(size: u32) -> (Pool, Vec<TcpStream>) {
    let key = PoolKey {
        db: "bench".to_string(),
        user: "bench".to_string(),
    };
    let pool = Pool::new(key, settings(size), SharedLimits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut far_ends = Vec::new();
    for _ in 0..size {
        let near = TcpStream::connect(addr).await.expect("connect");
        let (far, _) = listener.accept().await.expect("accept");
        pool.seed_idle_for_bench(ServerConn::for_bench(near));
        far_ends.push(far);
    }
    (pool, far_ends)
}

/// `iters` check-outs in all, split over `tasks` tasks; the time from the
/// first spawn to the last task's end.
async fn contend(pool: &Pool, tasks: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let pool = pool.clone();
            let n = iters / tasks + u64::from(i < iters % tasks);
            tokio::spawn(async move {
                for _ in 0..n {
                    let lease = pool.checkout().await.expect("idle connection");
                    lease.release();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    start.elapsed()
}

fn benches(c: &mut Criterion) {
    // As the proxy runs: the multi-threaded runtime, one worker per core.
    let rt = Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("pool");
    group.throughput(Throughput::Elements(1));
    for size in POOL_SIZES {
        let (pool, _far_ends) = rt.block_on(seeded_pool(size));
        for tasks in TASKS {
            group.bench_with_input(
                BenchmarkId::new(format!("size_{size}"), format!("{tasks}_tasks")),
                &tasks,
                |b, &tasks| b.iter_custom(|iters| rt.block_on(contend(&pool, tasks, iters))),
            );
            assert_eq!(pool.idle_count(), size as usize, "a connection was lost");
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = pool_benches;
    config = config();
    targets = benches
}
criterion_main!(pool_benches);
