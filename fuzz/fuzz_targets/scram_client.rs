//! pgwolf's SCRAM-SHA-256 client half, as a hostile server meets it: the
//! exchange from a ClientKey (pass-through) and postgres-protocol's from a
//! password, fed a server-first message, a 0xFF byte and a server-final
//! message. "NONCE" in the server-first stands for the client's nonce, so
//! inputs get past the nonce check to the salt, iterations and signature.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgwolf::auth::ScramVerifier;
use pgwolf::server::scram_keys::KeyScram;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::sync::OnceLock;

fn verifier() -> &'static ScramVerifier {
    static V: OnceLock<ScramVerifier> = OnceLock::new();
    V.get_or_init(|| ScramVerifier::from_password("pencil", b"0123456789abcdef", 1))
}

/// The nonce after "r=" in a client-first message.
fn nonce_of(client_first: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(client_first);
    text.split("r=").nth(1).unwrap_or_default().as_bytes().to_vec()
}

fn with_nonce(first: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(first.len() + nonce.len());
    let mut rest = first;
    while let Some(i) = rest.windows(5).position(|w| w == b"NONCE") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(nonce);
        rest = &rest[i + 5..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut ours = KeyScram::new([7; 32], verifier().clone());
    let server_first = with_nonce(first, &nonce_of(&ours.client_first()));
    if ours.client_final(&server_first).is_ok() {
        let _ = ours.finish(last);
    }
    // postgres-protocol refuses more than 100,000 iterations before PBKDF2.
    let mut theirs = ScramSha256::new(b"pencil", ChannelBinding::unsupported());
    let server_first = with_nonce(first, &nonce_of(theirs.message()));
    if theirs.update(&server_first).is_ok() {
        let _ = theirs.finish(last);
    }
});
