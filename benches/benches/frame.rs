//! Framing throughput: `Scanner` over whole streams, as the pump frames
//! them, in bytes per second (`frame_bytes`) and messages per second
//! (`frame_msgs`, whose inverse is the cost of one message).

#[allow(dead_code)] // each bench target uses part of the shared module
mod common;

use common::{ClientSide, ServerState, Track};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const SMALL_STREAM: usize = 64 * 1024;
const LARGE_ROW: usize = 8 * 1024;
const LARGE_ROWS: usize = 128;

struct Input {
    name: &'static str,
    stream: Vec<u8>,
    messages: usize,
    /// Which inspector frames it: the server's or the client's.
    server: bool,
}

fn inputs() -> Vec<Input> {
    let (simple, simple_n) = common::repeat_to(SMALL_STREAM, common::simple_select);
    let (extended, extended_n) = common::repeat_to(SMALL_STREAM, common::extended_select);
    let mut large = Vec::new();
    for _ in 0..LARGE_ROWS {
        common::data_row(&mut large, LARGE_ROW);
    }
    common::ready(&mut large, b'I');
    let large_n = common::count_messages(&large);
    let (client, client_n) = common::repeat_to(SMALL_STREAM, common::extended_request);
    vec![
        Input {
            name: "server_pgbench_simple",
            stream: simple,
            messages: simple_n,
            server: true,
        },
        Input {
            name: "server_pgbench_extended",
            stream: extended,
            messages: extended_n,
            server: true,
        },
        Input {
            name: "server_8k_datarows",
            stream: large,
            messages: large_n,
            server: true,
        },
        Input {
            name: "client_parse_bind_execute_sync",
            stream: client,
            messages: client_n,
            server: false,
        },
    ]
}

fn frame(input: &Input) -> usize {
    if input.server {
        let mut state = ServerState::default();
        common::frame_stream(black_box(&input.stream), &mut state.inspector())
    } else {
        let mut track = Track::default();
        common::frame_stream(
            black_box(&input.stream),
            &mut ClientSide(&mut track, None, false),
        )
    }
}

fn run_group(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    inputs: &[Input],
    throughput: impl Fn(&Input) -> Throughput,
) {
    for input in inputs {
        assert_eq!(frame(input), input.stream.len(), "{}", input.name);
        group.throughput(throughput(input));
        group.bench_function(input.name, |b| b.iter(|| frame(input)));
    }
}

fn benches(c: &mut Criterion) {
    let inputs = inputs();
    let mut bytes = c.benchmark_group("frame_bytes");
    run_group(&mut bytes, &inputs, |i| {
        Throughput::Bytes(i.stream.len() as u64)
    });
    bytes.finish();
    let mut msgs = c.benchmark_group("frame_msgs");
    run_group(&mut msgs, &inputs, |i| {
        Throughput::Elements(i.messages as u64)
    });
    msgs.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = frame_benches;
    config = config();
    targets = benches
}
criterion_main!(frame_benches);
