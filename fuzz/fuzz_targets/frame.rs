//! The message framer both directions use: headers, lengths against the
//! size limit, whole messages split off a buffer.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwolf::protocol::frame;

fuzz_target!(|data: &[u8]| {
    let _ = frame::header(data, 1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = frame::split_message(&mut buf, 1 << 20) {}
});
