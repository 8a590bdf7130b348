//! The first packet of a connection: startup, SSLRequest, CancelRequest,
//! or anything else a client may send before it is known.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Parse as many packets as the bytes hold, as a connection would.
    while let Ok(Some(_)) = pgwolf::protocol::startup::parse(&mut buf) {}
});
