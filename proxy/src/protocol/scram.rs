//! SCRAM-SHA-256 server exchange (RFC 5802, RFC 7677) as PostgreSQL runs it.
//!
//! Owns the server's half of AuthenticationSASL: checking the client's
//! messages and proof and building the server's replies. Sans-I/O: the caller
//! frames SASLInitialResponse/SASLResponse and AuthenticationSASLContinue/
//! Final. No channel binding until the proxy speaks TLS, so only
//! `SCRAM-SHA-256` (not `-PLUS`) is offered. Errors are fixed text and never
//! echo client bytes or key material.

use super::secret::{hmac_sha256, ScramVerifier};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// PostgreSQL's SCRAM_RAW_NONCE_LEN; 18 bytes make 24 base64 characters.
const SERVER_NONCE_LEN: usize = 18;

/// The mechanisms to list in AuthenticationSASL.
/// A SASLInitialResponse body: the mechanism's name (a C string), then
/// the length of the client's first message (-1 for none, which SCRAM
/// never sends) and the message. None when it does not frame exactly.
pub fn parse_initial_response(body: &[u8]) -> Option<(&str, &[u8])> {
    let end = body.iter().position(|b| *b == 0)?;
    let mechanism = std::str::from_utf8(&body[..end]).ok()?;
    let rest = &body[end + 1..];
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = &rest[4..];
    (usize::try_from(len).ok()? == data.len()).then_some((mechanism, data))
}

pub fn auth_sasl_mechanisms() -> &'static [&'static str] {
    &[SCRAM_SHA_256]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("client selected an unsupported SASL mechanism")]
    UnsupportedMechanism,
    #[error("client requested SCRAM channel binding, which this server does not support")]
    ChannelBindingUnsupported,
    /// The reason is fixed text: client bytes are never echoed.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Wrong password. The message is PostgreSQL's, which hides whether the
    /// user exists.
    #[error("password authentication failed")]
    InvalidProof,
    #[error("SCRAM message received out of order")]
    OutOfOrder,
}

impl ScramError {
    /// What the client sees: a wrong password is 28P01
    /// (invalid_password), anything else is the client breaking the
    /// protocol, 08P01 (protocol_violation), as in PostgreSQL.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ScramError::InvalidProof => "28P01",
            _ => "08P01",
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            ScramError::UnsupportedMechanism => "scram_unsupported_mechanism",
            ScramError::ChannelBindingUnsupported => "scram_channel_binding",
            ScramError::Malformed(_) => "scram_malformed",
            ScramError::InvalidProof => "scram_invalid_proof",
            ScramError::OutOfOrder => "scram_out_of_order",
        }
    }
}

/// One client's SCRAM exchange. Any error ends it: later calls fail with
/// [`ScramError::OutOfOrder`].
pub struct ScramServer {
    verifier: ScramVerifier,
    server_nonce: String,
    state: State,
}

enum State {
    Initial,
    ServerFirstSent(Pending),
    Authenticated { client_key: [u8; 32] },
    Failed,
}

/// What the final step needs from the first.
struct Pending {
    /// The gs2 header the client must echo, base64 encoded, in `c=`.
    expected_cbind: &'static [u8],
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
    /// Client nonce followed by server nonce.
    nonce: Vec<u8>,
}

// The verifier and recovered ClientKey are secrets; show the step only.
impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::ServerFirstSent(_) => "server-first-sent",
            State::Authenticated { .. } => "authenticated",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("state", &state)
            .finish()
    }
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier) -> Self {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        ScramServer {
            verifier,
            server_nonce: STANDARD.encode(raw),
            state: State::Initial,
        }
    }

    /// Takes SASLInitialResponse's mechanism and client-first-message and
    /// returns the server-first-message for AuthenticationSASLContinue.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Initial => {}
            other => return Err(self.out_of_order(other)),
        }
        if mechanism != SCRAM_SHA_256 {
            return Err(ScramError::UnsupportedMechanism);
        }
        let first = ClientFirst::parse(data)?;

        let mut nonce = first.nonce.to_vec();
        nonce.extend_from_slice(self.server_nonce.as_bytes());
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(
            format!(
                ",s={},i={}",
                STANDARD.encode(&self.verifier.salt),
                self.verifier.iterations
            )
            .as_bytes(),
        );

        self.state = State::ServerFirstSent(Pending {
            expected_cbind: first.expected_cbind,
            client_first_bare: first.bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        });
        Ok(server_first)
    }

    /// Takes SASLResponse's client-final-message, checks the proof and
    /// returns the server-final-message for AuthenticationSASLFinal.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let pending = match std::mem::replace(&mut self.state, State::Failed) {
            State::ServerFirstSent(pending) => pending,
            other => return Err(self.out_of_order(other)),
        };
        let last = ClientFinal::parse(data)?;
        if last.cbind != pending.expected_cbind {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        if last.nonce != pending.nonce.as_slice() {
            return Err(ScramError::Malformed("nonce does not match"));
        }

        let mut auth_message = pending.client_first_bare;
        auth_message.push(b',');
        auth_message.extend_from_slice(&pending.server_first);
        auth_message.push(b',');
        auth_message.extend_from_slice(last.without_proof);

        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the
        // client knew the password iff H(ClientKey) == StoredKey.
        let signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let mut client_key = last.proof;
        client_key
            .iter_mut()
            .zip(signature)
            .for_each(|(k, s)| *k ^= s);
        let stored_key = Sha256::digest(client_key);
        if !bool::from(stored_key.as_slice().ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::InvalidProof);
        }

        let server_signature = hmac_sha256(&self.verifier.server_key, &auth_message);
        self.state = State::Authenticated { client_key };
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }

    /// A message out of turn fails an exchange in progress, but a late one
    /// does not undo a success that was already reported.
    fn out_of_order(&mut self, previous: State) -> ScramError {
        if let State::Authenticated { .. } = previous {
            self.state = previous;
        }
        ScramError::OutOfOrder
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated { .. })
    }

    /// The ClientKey recovered from a successful proof. With it the proxy
    /// can answer a server's SCRAM challenge for the same verifier without
    /// knowing the password, so it is as sensitive as the password.
    pub fn client_key(&self) -> Option<[u8; 32]> {
        match self.state {
            State::Authenticated { client_key } => Some(client_key),
            _ => None,
        }
    }
}

/// `gs2-header client-first-message-bare`, borrowed from the input.
struct ClientFirst<'a> {
    expected_cbind: &'static [u8],
    bare: &'a [u8],
    nonce: &'a [u8],
}

impl<'a> ClientFirst<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, ScramError> {
        reject_nul(data)?;
        // "y" means the client could bind but thinks we cannot; since we
        // offer no -PLUS mechanism that is the truth, not a downgrade.
        let (expected_cbind, rest) = match data {
            [b'n', b',', rest @ ..] => (&b"biws"[..], rest),
            [b'y', b',', rest @ ..] => (&b"eSws"[..], rest),
            [b'p', b'=', ..] => return Err(ScramError::ChannelBindingUnsupported),
            _ => return Err(ScramError::Malformed("invalid gs2 header")),
        };
        // PostgreSQL takes the user from the startup packet, so an
        // authorization identity could only disagree with it.
        let bare = match rest {
            [b',', bare @ ..] => bare,
            [b'a', b'=', ..] => {
                return Err(ScramError::Malformed(
                    "authorization identity is not supported",
                ))
            }
            _ => return Err(ScramError::Malformed("invalid gs2 header")),
        };

        let mut attrs = bare.split(|&b| b == b',');
        match attrs.next() {
            Some([b'm', b'=', ..]) => {
                return Err(ScramError::Malformed(
                    "mandatory extensions are not supported",
                ))
            }
            // The user name is ignored, as PostgreSQL does: libpq sends "n=".
            Some([b'n', b'=', ..]) => {}
            _ => return Err(ScramError::Malformed("expected user name attribute")),
        }
        let nonce = match attrs.next() {
            Some([b'r', b'=', nonce @ ..]) if !nonce.is_empty() => nonce,
            _ => return Err(ScramError::Malformed("expected nonce attribute")),
        };
        if !nonce.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            return Err(ScramError::Malformed("nonce has non-printable characters"));
        }
        attrs.try_for_each(check_extension)?;
        Ok(ClientFirst {
            expected_cbind,
            bare,
            nonce,
        })
    }
}

/// `c=...,r=...[,extensions],p=...`, borrowed from the input.
struct ClientFinal<'a> {
    cbind: &'a [u8],
    nonce: &'a [u8],
    without_proof: &'a [u8],
    proof: [u8; 32],
}

impl<'a> ClientFinal<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, ScramError> {
        reject_nul(data)?;
        // The proof comes last, so everything before ",p=" is what the
        // client signed (client-final-message-without-proof).
        let split = data
            .iter()
            .rposition(|&b| b == b',')
            .ok_or(ScramError::Malformed("expected proof attribute"))?;
        let (without_proof, proof) = (&data[..split], &data[split + 1..]);
        let proof = proof
            .strip_prefix(b"p=")
            .ok_or(ScramError::Malformed("expected proof attribute"))?;
        let proof = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
            .ok_or(ScramError::Malformed("invalid client proof"))?;

        let mut attrs = without_proof.split(|&b| b == b',');
        let cbind = match attrs.next() {
            Some([b'c', b'=', cbind @ ..]) => cbind,
            _ => return Err(ScramError::Malformed("expected channel binding attribute")),
        };
        let nonce = match attrs.next() {
            Some([b'r', b'=', nonce @ ..]) => nonce,
            _ => return Err(ScramError::Malformed("expected nonce attribute")),
        };
        attrs.try_for_each(check_extension)?;
        Ok(ClientFinal {
            cbind,
            nonce,
            without_proof,
            proof,
        })
    }
}

/// PostgreSQL refuses NUL anywhere in a SCRAM message.
fn reject_nul(data: &[u8]) -> Result<(), ScramError> {
    match data.contains(&0) {
        true => Err(ScramError::Malformed("message contains a NUL byte")),
        false => Ok(()),
    }
}

/// Optional extensions are ignored, but must still look like `x=value`.
fn check_extension(attr: &[u8]) -> Result<(), ScramError> {
    match attr {
        [name, b'=', ..] if name.is_ascii_alphabetic() => Ok(()),
        _ => Err(ScramError::Malformed("invalid attribute")),
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
