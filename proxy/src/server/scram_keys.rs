//! SCRAM pass-through: logging in to a server as a user whose password
//! pgwolf never sees. When the auth file holds the same SCRAM verifier as
//! the server (`pg_authid.rolpassword`), a client's successful proof
//! yields its ClientKey (ClientProof XOR ClientSignature); with that key
//! and the verifier pgwolf can answer the server's challenge itself.
//!
//! postgres-protocol's SCRAM client starts from a password, so this small
//! client starts from the ClientKey instead (RFC 5802 §3).

use crate::auth::{hmac_sha256, ScramVerifier};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

/// ClientKeys learned from client logins, by user. As sensitive as the
/// passwords: kept in memory only, never logged (no `Debug`).
#[derive(Default)]
pub struct ClientKeys(DashMap<String, [u8; 32]>);

impl ClientKeys {
    pub fn remember(&self, user: &str, client_key: [u8; 32]) {
        self.0.insert(user.to_string(), client_key);
    }

    /// The key for `user` if it belongs to `verifier` (H(ClientKey) is the
    /// StoredKey): a reload that changed the verifier makes it useless.
    pub fn for_verifier(&self, user: &str, verifier: &ScramVerifier) -> Option<[u8; 32]> {
        let key = *self.0.get(user)?;
        let stored: [u8; 32] = Sha256::digest(key).into();
        (stored == verifier.stored_key).then_some(key)
    }
}

/// Why an exchange from a ClientKey could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyScramError {
    /// The server challenged with another salt or iteration count than the
    /// verifier's. PostgreSQL does so on purpose for a role it will refuse
    /// whatever the proof (a password past VALID UNTIL, no password, an
    /// unknown role: a made-up salt hides which), and for a verifier that
    /// changed since pgwolf's copy; pgwolf cannot tell these apart.
    #[error(
        "the server's SCRAM salt or iteration count differ from the verifier pgwolf holds: \
         the role's password expired (VALID UNTIL) or changed, or the role has no password \
         (copy pg_authid.rolpassword again if it changed)"
    )]
    OtherVerifier,
    /// The server's message does not parse, or its proof is wrong.
    #[error("{0}")]
    Server(&'static str),
    #[error("server refused the SCRAM proof: {0}")]
    Refused(String),
}

/// One SCRAM-SHA-256 exchange with a server, from a ClientKey.
pub struct KeyScram {
    client_key: [u8; 32],
    verifier: ScramVerifier,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<[u8; 32]>,
}

impl KeyScram {
    pub fn new(client_key: [u8; 32], verifier: ScramVerifier) -> Self {
        let nonce = STANDARD.encode(rand::random::<[u8; 18]>());
        KeyScram {
            client_key,
            verifier,
            // PostgreSQL takes the user from the startup packet, not here.
            client_first_bare: format!("n=,r={nonce}"),
            nonce,
            server_signature: None,
        }
    }

    /// SASLInitialResponse data: no channel binding.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message for the server-first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, KeyScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| KeyScramError::Server("server-first is not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = STANDARD.decode(v).ok(),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let nonce = nonce
            .filter(|n| n.starts_with(&self.nonce) && n.len() > self.nonce.len())
            .ok_or(KeyScramError::Server(
                "server-first has no nonce extending ours",
            ))?;
        let (salt, iterations) = salt.zip(iterations).ok_or(KeyScramError::Server(
            "server-first lacks salt or iterations",
        ))?;
        if salt != self.verifier.salt || iterations != self.verifier.iterations {
            return Err(KeyScramError::OtherVerifier);
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = self
            .client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = Some(hmac_sha256(
            &self.verifier.server_key,
            auth_message.as_bytes(),
        ));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it holds the
    /// verifier too.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), KeyScramError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| KeyScramError::Server("server-final is not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            // The server's words, bounded: a hostile server's are not logged whole.
            let e: String = e.chars().take(64).collect();
            return Err(KeyScramError::Refused(e));
        }
        let given = text
            .strip_prefix("v=")
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(KeyScramError::Server("malformed server-final"))?;
        match self.server_signature {
            Some(want) if given == want => Ok(()),
            _ => Err(KeyScramError::Server(
                "the server's SCRAM signature does not match the verifier",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::scram::ScramServer;

    /// pgwolf's own SCRAM server plays PostgreSQL: a client with the
    /// password authenticates, the key it yields logs in a second time
    /// without the password.
    #[test]
    fn a_key_from_one_login_answers_the_next() {
        let verifier = ScramVerifier::from_password("s3cret", b"0123456789abcdef", 4096);
        let mut first = ScramServer::new(verifier.clone());
        let mut client = postgres_protocol::authentication::sasl::ScramSha256::new(
            b"s3cret",
            postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
        );
        let sf = first
            .client_first("SCRAM-SHA-256", client.message())
            .unwrap();
        client.update(&sf).unwrap();
        let fin = first.client_final(client.message()).unwrap();
        client.finish(&fin).unwrap();
        let key = first.client_key().expect("authenticated");

        let keys = ClientKeys::default();
        keys.remember("app", key);
        let key = keys.for_verifier("app", &verifier).expect("same verifier");
        let other = ScramVerifier::from_password("other", b"0123456789abcdef", 4096);
        assert!(keys.for_verifier("app", &other).is_none());

        let mut server = ScramServer::new(verifier.clone());
        let mut ours = KeyScram::new(key, verifier.clone());
        let sf = server
            .client_first("SCRAM-SHA-256", &ours.client_first())
            .unwrap();
        let cf = ours.client_final(&sf).unwrap();
        let fin = server
            .client_final(&cf)
            .expect("the proof from the key is valid");
        ours.finish(&fin).unwrap();
        assert!(server.is_authenticated());

        // A server with another salt is told apart before any proof is sent.
        let moved = ScramVerifier::from_password("s3cret", b"fedcba9876543210", 4096);
        let mut server = ScramServer::new(moved);
        let mut ours = KeyScram::new(key, verifier);
        let sf = server
            .client_first("SCRAM-SHA-256", &ours.client_first())
            .unwrap();
        let e = ours.client_final(&sf).unwrap_err();
        assert_eq!(e, KeyScramError::OtherVerifier);
    }
}
