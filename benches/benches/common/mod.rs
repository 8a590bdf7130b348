//! Shared by the `frame` and `ready_scan` benches: wire messages shaped like
//! what PostgreSQL and pgbench send, and the pump's own inspectors. Each
//! bench target compiles this module on its own and uses part of it.

use pgwolf::protocol::backend;
use pgwolf::protocol::frame::{Inspect, Scanner};
use pgwolf::protocol::frontend;
use pgwolf::server::params::ParamSet;

/// The pump's read size (`pump::READ_CHUNK`): a stream arrives in reads of
/// at most this many bytes, so messages straddle reads as they do live.
pub const READ_CHUNK: usize = 16 * 1024;

/// The default `max_packet_size`.
pub const MAX_PACKET: u32 = 1 << 30;

const PARSE_COMPLETE: u8 = b'1';
const BIND_COMPLETE: u8 = b'2';
const PARSE: u8 = b'P';
const BIND: u8 = b'B';
const DESCRIBE: u8 = b'D';

/// Appends one message: tag, length counting itself, body.
pub fn put(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// RowDescription of one int4 column, as for `SELECT abalance ...`.
fn row_description(out: &mut Vec<u8>) {
    let mut b = Vec::new();
    b.extend_from_slice(&1i16.to_be_bytes());
    cstr(&mut b, "abalance");
    b.extend_from_slice(&16_397i32.to_be_bytes()); // table oid
    b.extend_from_slice(&3i16.to_be_bytes()); // column number
    b.extend_from_slice(&23i32.to_be_bytes()); // int4
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes()); // text
    put(out, backend::ROW_DESCRIPTION, &b);
}

/// DataRow with one column of `len` bytes.
pub fn data_row(out: &mut Vec<u8>, len: usize) {
    let mut b = Vec::with_capacity(len + 6);
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&(len as i32).to_be_bytes());
    b.resize(b.len() + len, b'x');
    put(out, backend::DATA_ROW, &b);
}

fn command_complete(out: &mut Vec<u8>, tag: &str) {
    let mut b = Vec::new();
    cstr(&mut b, tag);
    put(out, backend::COMMAND_COMPLETE, &b);
}

pub fn ready(out: &mut Vec<u8>, status: u8) {
    put(out, backend::READY_FOR_QUERY, &[status]);
}

/// `pgbench -S -M simple`: the answer to one `SELECT abalance ...` Query.
pub fn simple_select(out: &mut Vec<u8>) {
    row_description(out);
    let mut b = Vec::new();
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&5i32.to_be_bytes());
    b.extend_from_slice(b"-2345");
    put(out, backend::DATA_ROW, &b);
    command_complete(out, "SELECT 1");
    ready(out, b'I');
}

/// `pgbench -S -M extended`: the answer to Parse/Bind/Describe/Execute/Sync.
pub fn extended_select(out: &mut Vec<u8>) {
    put(out, PARSE_COMPLETE, &[]);
    put(out, BIND_COMPLETE, &[]);
    simple_select(out);
}

/// A failed statement: ErrorResponse as PostgreSQL 15 words it, then 'I'.
pub fn error_ready(out: &mut Vec<u8>) {
    let mut b = Vec::new();
    for (field, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "42P01"),
        (b'M', "relation \"pgbench_acounts\" does not exist"),
        (b'P', "24"),
        (b'F', "parse_relation.c"),
        (b'L', "1392"),
        (b'R', "parserOpenTable"),
    ] {
        b.push(field);
        cstr(&mut b, value);
    }
    b.push(0);
    put(out, backend::ERROR_RESPONSE, &b);
    ready(out, b'I');
}

/// `SET TimeZone = 'UTC'`: CommandComplete, the ParameterStatus the pump
/// records on both sides, ReadyForQuery.
pub fn set_timezone(out: &mut Vec<u8>) {
    command_complete(out, "SET");
    let mut b = Vec::new();
    cstr(&mut b, "TimeZone");
    cstr(&mut b, "UTC");
    put(out, backend::PARAMETER_STATUS, &b);
    ready(out, b'I');
}

/// One `pgbench -S -M extended` request: Parse/Bind/Describe/Execute/Sync.
pub fn extended_request(out: &mut Vec<u8>) {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(
        &mut b,
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    );
    b.extend_from_slice(&0i16.to_be_bytes());
    put(out, PARSE, &b);

    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, "");
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&5i32.to_be_bytes());
    b.extend_from_slice(b"81234");
    b.extend_from_slice(&0i16.to_be_bytes());
    put(out, BIND, &b);

    put(out, DESCRIBE, b"P\0");
    let mut b = Vec::new();
    cstr(&mut b, "");
    b.extend_from_slice(&0i32.to_be_bytes());
    put(out, frontend::EXECUTE, &b);
    put(out, frontend::SYNC, &[]);
}

/// Repeats `unit` until the stream is at least `target` bytes; returns the
/// stream and how many messages it holds.
pub fn repeat_to(target: usize, unit: impl Fn(&mut Vec<u8>)) -> (Vec<u8>, usize) {
    let mut one = Vec::new();
    unit(&mut one);
    let per_unit = count_messages(&one);
    let mut out = Vec::with_capacity(target + one.len());
    let mut n = 0;
    while out.len() < target {
        out.extend_from_slice(&one);
        n += per_unit;
    }
    (out, n)
}

/// Messages in a well-formed stream (set-up only, never measured).
pub fn count_messages(mut buf: &[u8]) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize + 1;
        buf = &buf[len..];
        n += 1;
    }
    n
}

// Each bench uses some of these; unused ones are not an error there.
#[allow(unused_imports)]
pub use pgwolf::client::pump::{ClientSide, ServerSide, Track};

/// Everything a `ServerSide` borrows, owned.
#[derive(Default)]
pub struct ServerState {
    pub track: Track,
    pub server_params: ParamSet,
    pub client_params: std::sync::Arc<ParamSet>,
}

impl ServerState {
    pub fn inspector(&mut self) -> ServerSide<'_, 'static> {
        ServerSide {
            track: &mut self.track,
            server_params: &mut self.server_params,
            client_params: &mut self.client_params,
            prepared: None,
        }
    }
}

/// Frames `stream` as the pump does: it arrives in `READ_CHUNK` reads, and
/// after a stop (ReadyForQuery) scanning resumes, as `scan_server` loops.
/// The buffer is never drained (the scanner's offsets stay valid because
/// nothing is consumed), so no copy is measured. Returns the bytes judged
/// ready, which is the whole stream.
pub fn frame_stream<I: Inspect>(stream: &[u8], inspect: &mut I) -> usize {
    let mut scanner = Scanner::new();
    let mut end = 0;
    let mut ready = 0;
    while end < stream.len() {
        end = (end + READ_CHUNK).min(stream.len());
        loop {
            let s = scanner
                .scan(&stream[..end], MAX_PACKET, inspect)
                .expect("well-formed stream");
            ready = s.ready;
            if !s.stopped {
                break;
            }
        }
    }
    ready
}
