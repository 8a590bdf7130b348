//! The Scanner the pump forwards server output with, against the plain
//! framer as the oracle: bytes fed in chunks of a fuzzed size, streaming
//! every message but ReadyForQuery, which it must stop right after. What
//! it forwards must be a prefix of the input ending on a message boundary
//! whenever it stops, and, for input that frames cleanly, all of it.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwolf::protocol::frame::{self, Flow, Inspect, Scanner, Want};

const MAX: u32 = 1 << 16;

struct UntilReady;

impl Inspect for UntilReady {
    fn header(&mut self, tag: u8, _len: usize) -> Want {
        if tag == b'Z' {
            Want::Whole
        } else {
            Want::Pass
        }
    }
    fn message(&mut self, _tag: u8, _body: &[u8]) -> Flow {
        Flow::StopAfter
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 32) + 1;

    // Where each ReadyForQuery ends, and how far the input frames cleanly.
    let mut ends = Vec::new();
    let mut whole = BytesMut::from(stream);
    let mut framed = 0;
    let mut clean = true;
    loop {
        match frame::split_message(&mut whole, MAX) {
            Ok(Some((tag, body))) => {
                framed += frame::HEADER_LEN + body.len();
                if tag == b'Z' {
                    ends.push(framed);
                }
            }
            Ok(None) => break,
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    clean &= framed == stream.len();

    let mut scanner = Scanner::new();
    let (mut buf, mut fed, mut forwarded) = (Vec::new(), 0, 0);
    let mut stops = Vec::new();
    loop {
        let s = match scanner.scan(&buf, MAX, &mut UntilReady) {
            Ok(s) => s,
            Err(_) => {
                assert!(!clean, "a clean stream made the scanner fail");
                return;
            }
        };
        assert_eq!(s.taken, 0);
        forwarded += s.ready;
        buf.drain(..s.ready);
        scanner.consumed(s.ready);
        assert!(forwarded <= fed);
        if s.stopped {
            stops.push(forwarded);
            continue;
        }
        if fed == stream.len() {
            break;
        }
        let next = (fed + chunk).min(stream.len());
        buf.extend_from_slice(&stream[fed..next]);
        fed = next;
    }
    // Every stop is right after a ReadyForQuery, in order, none skipped.
    assert_eq!(
        stops[..],
        ends[..stops.len()],
        "stopped off a ReadyForQuery"
    );
    if clean {
        assert_eq!(stops, ends);
        assert_eq!(
            forwarded,
            stream.len(),
            "a clean stream was not all forwarded"
        );
        assert!(scanner.at_boundary());
    }
});
