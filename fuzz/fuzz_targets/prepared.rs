//! The prepared-statement rewriter: client messages (Parse, Bind,
//! Describe, Close and the rest) through the renaming and re-preparing
//! logic, with a small server cache so evictions happen, then server
//! message tags through the queue of answers in flight.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwolf::prepared::responses::Responses;
use pgwolf::prepared::rewrite::Rewriter;
use pgwolf::prepared::statements::{ClientStatements, Counters, ServerStatements};
use pgwolf::protocol::frame::split_message;

fuzz_target!(|data: &[u8]| {
    let (mut names, mut server) = (ClientStatements::default(), ServerStatements::new(3));
    let (mut responses, counters) = (Responses::default(), Counters::default());
    let mut rewriter = Rewriter {
        names: &mut names,
        server: &mut server,
        responses: &mut responses,
        counters: &counters,
    };
    let mut buf = BytesMut::from(data);
    let mut out = BytesMut::new();
    let mut tags = Vec::new();
    while let Ok(Some((tag, body))) = split_message(&mut buf, 1 << 20) {
        let mut msg = vec![tag];
        msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        let _ = rewriter.client_message(&msg, &mut out);
        tags.push(tag);
    }
    // The server's side: answers arriving with these tags, in order.
    let mut undone = Vec::new();
    for tag in tags {
        let _ = responses.on_server(tag, &mut undone);
    }
});
