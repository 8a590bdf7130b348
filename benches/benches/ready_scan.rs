//! Finding the end of a transaction: one small server response, read in
//! one piece, scanned by the pump's server-side inspector until it stops
//! after ReadyForQuery. One bench per response shape; the time is the cost
//! the pump pays per transaction to decide whether to release the server.

#[allow(dead_code)] // each bench target uses part of the shared module
mod common;

use common::ServerState;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgwolf::protocol::frame::Scanner;
use std::hint::black_box;
use std::time::Duration;

/// Scans one response as `scan_server` does and reports whether the
/// server may go back to the pool.
fn ends_transaction(response: &[u8], state: &mut ServerState) -> bool {
    let mut scanner = Scanner::new();
    state.track.outstanding = 1;
    let s = scanner
        .scan(response, common::MAX_PACKET, &mut state.inspector())
        .expect("well-formed response");
    debug_assert_eq!(s.ready, response.len());
    s.stopped && state.track.idle()
}

/// Appends one response to the buffer.
type Build = fn(&mut Vec<u8>);

fn benches(c: &mut Criterion) {
    let shapes: [(&str, Build); 4] = [
        ("simple_select", common::simple_select),
        ("extended_select", common::extended_select),
        ("error_ready", common::error_ready),
        ("set_timezone", common::set_timezone),
    ];
    let mut group = c.benchmark_group("ready_scan");
    group.throughput(Throughput::Elements(1));
    for (name, build) in shapes {
        let mut response = Vec::new();
        build(&mut response);
        let mut state = ServerState::default();
        assert!(ends_transaction(&response, &mut state), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| ends_transaction(black_box(&response), &mut state))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = ready_scan_benches;
    config = config();
    targets = benches
}
criterion_main!(ready_scan_benches);
