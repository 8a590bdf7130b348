//! pgwolf's SCRAM-SHA-256 server exchange: the input is a
//! SASLInitialResponse body as the client sends it (mechanism, length,
//! client-first message), a 0xFF byte, and a client-final message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgwolf::auth::ScramVerifier;
use pgwolf::protocol::scram::{parse_initial_response, ScramServer};
use std::sync::OnceLock;

fn verifier() -> &'static ScramVerifier {
    static V: OnceLock<ScramVerifier> = OnceLock::new();
    // One iteration: PBKDF2 at 4096 would make each run a millisecond.
    V.get_or_init(|| ScramVerifier::from_password("pencil", b"0123456789abcdef", 1))
}

fuzz_target!(|data: &[u8]| {
    let (initial, last) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some((mechanism, first)) = parse_initial_response(initial) else {
        return;
    };
    let mut server = ScramServer::new(verifier().clone());
    if server.client_first(mechanism, first).is_ok() {
        let _ = server.client_final(last);
    }
    let _ = server.client_key();
});
