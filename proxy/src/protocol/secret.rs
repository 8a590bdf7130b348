//! One user's stored secret, in the three forms PostgreSQL and PgBouncer know.
//!
//! Owns recognising a secret's form and deriving SCRAM verifiers. It must not
//! print secrets: `Debug` names the kind only, and nothing here logs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
/// What PostgreSQL uses when it hashes a password (`scram_iterations`).
const SCRAM_DEFAULT_ITERATIONS: u32 = 4096;
const SCRAM_DEFAULT_SALT_LEN: usize = 16;
const MD5_PREFIX: &str = "md5";
const MD5_HEX_LEN: usize = 32;

/// What an auth file (or later an auth query) holds for a user.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password.
    Plain(String),
    /// `"md5" + hex(md5(password + user))`, as in pg_authid.
    Md5(String),
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    Scram(ScramVerifier),
}

// Secrets never reach logs: Debug says which kind only.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Secret::Plain(_) => "Plain",
            Secret::Md5(_) => "Md5",
            Secret::Scram(_) => "Scram",
        };
        write!(f, "Secret::{kind}(<redacted>)")
    }
}

impl Secret {
    /// Recognises the form of a stored password the way PostgreSQL's
    /// `get_password_type` does: anything that is not a well-formed md5 hash
    /// or SCRAM verifier is a plaintext password.
    pub fn parse(s: &str) -> Secret {
        if is_md5_hash(s) {
            Secret::Md5(s.to_owned())
        } else if let Some(verifier) = ScramVerifier::parse(s) {
            Secret::Scram(verifier)
        } else {
            Secret::Plain(s.to_owned())
        }
    }

    /// The SCRAM verifier to authenticate a client against, if this secret
    /// can give one. A plaintext password gets a fresh random salt on every
    /// call, so callers that authenticate often should cache the result. An
    /// md5 hash cannot be turned into a verifier, and an empty password never
    /// authenticates (as in PostgreSQL).
    pub fn scram_verifier(&self) -> Option<ScramVerifier> {
        match self {
            Secret::Plain(password) if password.is_empty() => None,
            Secret::Plain(password) => Some(derive_with_saslprep(password)),
            Secret::Scram(verifier) => Some(verifier.clone()),
            Secret::Md5(_) => None,
        }
    }
}

/// PostgreSQL accepts only lowercase hex here; an uppercase "hash" is a
/// plaintext password that happens to look like one.
fn is_md5_hash(s: &str) -> bool {
    s.len() == MD5_PREFIX.len() + MD5_HEX_LEN
        && s.starts_with(MD5_PREFIX)
        && s.as_bytes()[MD5_PREFIX.len()..]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A SCRAM-SHA-256 verifier as stored in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

// The keys let anyone impersonate the server (ServerKey) or mount an offline
// attack on the password (StoredKey), so they stay out of logs too.
impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(<redacted>)")
    }
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (base64
    /// fields), the format PostgreSQL stores and PgBouncer's userlist accepts.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(SCRAM_PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;

        // u32::from_str accepts a leading '+'; PostgreSQL's strtol does too,
        // but a verifier never has one, so only plain digits count.
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
        let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(ScramVerifier {
            iterations,
            salt,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
        })
    }

    /// Derives the verifier PostgreSQL would store for `password` with this
    /// salt and iteration count (RFC 5802: SaltedPassword = Hi(password),
    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
    /// HMAC(SaltedPassword, "Server Key")).
    ///
    /// The password bytes are used as they are: PostgreSQL first applies
    /// SASLprep (RFC 4013), which this crate cannot reach without a
    /// `stringprep` dependency. SASLprep leaves ASCII passwords unchanged, so
    /// the result matches PostgreSQL for every ASCII password; non-ASCII ones
    /// may differ. [`Secret::scram_verifier`] does apply SASLprep.
    ///
    /// An iteration count of 0 is meaningless in SCRAM and is taken as 1.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let salted_password = hi(password.as_bytes(), salt, iterations);
        let client_key = hmac_sha256(&salted_password, b"Client Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted_password, b"Server Key"),
        }
    }

    /// The ClientKey `password` gives with this verifier's salt, if it is
    /// this verifier's password: a cleartext login yields it as a SCRAM
    /// proof does, for pass-through (`server/scram_keys.rs`).
    pub fn client_key_for(&self, password: &str) -> Option<[u8; 32]> {
        let salted_password = hi(password.as_bytes(), &self.salt, self.iterations);
        let client_key = hmac_sha256(&salted_password, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        bool::from(subtle::ConstantTimeEq::ct_eq(
            &stored[..],
            &self.stored_key[..],
        ))
        .then_some(client_key)
    }

    /// A stand-in for a user who does not exist: the same salt for the same
    /// user every time (from `key`, a per-process secret), keys that no
    /// password opens, and no PBKDF2 to time. A real user's salt is stable
    /// too, so neither a second login nor the first answer's delay tells
    /// the two apart.
    pub fn decoy(key: &[u8; 32], user: &str) -> Self {
        let with = |label: &[u8]| hmac_sha256(key, &[label, user.as_bytes()].concat());
        ScramVerifier {
            iterations: SCRAM_DEFAULT_ITERATIONS,
            salt: with(b"salt")[..SCRAM_DEFAULT_SALT_LEN].to_vec(),
            stored_key: with(b"stored key"),
            server_key: with(b"server key"),
        }
    }

    /// The stored form, as [`ScramVerifier::parse`] reads it. Deliberately
    /// not `Display`, so that a verifier cannot slip into a log line.
    pub fn encode(&self) -> String {
        format!(
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

fn decode_key(b64: &str) -> Option<[u8; 32]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// Derives a verifier with a random salt. postgres-protocol's hasher is used
/// because it applies SASLprep exactly as libpq and the server do (falling
/// back to the raw bytes when the password is not valid SASLprep input), so
/// non-ASCII passwords verify the same way they would against PostgreSQL.
fn derive_with_saslprep(password: &str) -> ScramVerifier {
    let stored = postgres_protocol::password::scram_sha_256(password.as_bytes());
    ScramVerifier::parse(&stored).unwrap_or_else(|| {
        // Unreachable unless postgres-protocol changes its output format;
        // deriving without SASLprep is still right for ASCII passwords.
        let mut salt = [0u8; SCRAM_DEFAULT_SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        ScramVerifier::from_password(password, &salt, SCRAM_DEFAULT_ITERATIONS)
    })
}

/// PBKDF2-HMAC-SHA-256 with a single output block, which is SCRAM's Hi().
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC accepts any key length");
    let mut block = mac.clone();
    block.update(salt);
    block.update(&1u32.to_be_bytes());
    let mut prev: [u8; 32] = block.finalize().into_bytes().into();
    let mut result = prev;
    for _ in 1..iterations {
        let mut block = mac.clone();
        block.update(&prev);
        prev = block.finalize().into_bytes().into();
        result.iter_mut().zip(prev).for_each(|(r, p)| *r ^= p);
    }
    result
}

/// HMAC-SHA-256, SCRAM's HMAC(); every SCRAM computation in the crate uses
/// this one.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// postgres-protocol's own known answer for password "secret".
    const SECRET_VERIFIER: &str = "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=";

    #[test]
    fn from_password_matches_known_verifier() {
        let salt: Vec<u8> = (1..=16).collect();
        let derived = ScramVerifier::from_password("secret", &salt, 4096);
        assert_eq!(derived.encode(), SECRET_VERIFIER);
        assert_eq!(ScramVerifier::parse(SECRET_VERIFIER), Some(derived));
    }

    #[test]
    fn from_password_matches_postgres_protocol() {
        let stored = postgres_protocol::password::scram_sha_256(b"pa ss:w$rd");
        let parsed = ScramVerifier::parse(&stored).expect("postgres-protocol output parses");
        let derived = ScramVerifier::from_password("pa ss:w$rd", &parsed.salt, parsed.iterations);
        assert_eq!(derived, parsed);
        assert_eq!(derived.encode(), stored);
    }

    #[test]
    fn parse_recognises_each_kind() {
        assert!(matches!(Secret::parse(SECRET_VERIFIER), Secret::Scram(_)));
        let md5 = "md54ab2c5d00339c4b2a4e921d2dc4edec7";
        assert_eq!(Secret::parse(md5), Secret::Md5(md5.to_owned()));
        for plain in [
            "hunter2",
            "",
            "md5",
            "md54AB2C5D00339C4B2A4E921D2DC4EDEC7", // uppercase: not what PG stores
            "md54ab2c5d00339c4b2a4e921d2dc4edec",  // 31 hex digits
            "md54ab2c5d00339c4b2a4e921d2dc4edec7a", // 33
            "md54ab2c5d00339c4b2a4e921d2dc4edeczz",
        ] {
            assert_eq!(
                Secret::parse(plain),
                Secret::Plain(plain.to_owned()),
                "{plain}"
            );
        }
    }

    #[test]
    fn malformed_verifiers_are_plain_passwords() {
        let (_, keys) = SECRET_VERIFIER.split_once("==$").unwrap();
        for bad in [
            "SCRAM-SHA-256$".to_owned(),
            format!("SCRAM-SHA-256$0:AQIDBAUGBwgJCgsMDQ4PEA==${keys}"),
            format!("SCRAM-SHA-256$+4096:AQIDBAUGBwgJCgsMDQ4PEA==${keys}"),
            format!("SCRAM-SHA-256$x:AQIDBAUGBwgJCgsMDQ4PEA==${keys}"),
            format!("SCRAM-SHA-256$4096:${keys}"),
            format!("SCRAM-SHA-256$4096:not*base64${keys}"),
            "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$AAAA:AAAA".to_owned(),
            SECRET_VERIFIER.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            SECRET_VERIFIER.replacen(':', ";", 1),
        ] {
            assert_eq!(ScramVerifier::parse(&bad), None, "{bad}");
            assert_eq!(Secret::parse(&bad), Secret::Plain(bad.clone()));
        }
    }

    #[test]
    fn plain_derives_a_salted_verifier_and_md5_cannot() {
        let plain = Secret::Plain("secret".to_owned());
        let a = plain.scram_verifier().unwrap();
        let b = plain.scram_verifier().unwrap();
        assert_eq!(a.iterations, SCRAM_DEFAULT_ITERATIONS);
        assert_eq!(a.salt.len(), SCRAM_DEFAULT_SALT_LEN);
        assert_ne!(a.salt, b.salt, "each derivation gets a fresh salt");
        assert_eq!(
            ScramVerifier::from_password("secret", &a.salt, a.iterations),
            a
        );

        let stored = Secret::parse(SECRET_VERIFIER);
        assert_eq!(
            stored.scram_verifier(),
            ScramVerifier::parse(SECRET_VERIFIER)
        );
        assert_eq!(
            Secret::parse("md54ab2c5d00339c4b2a4e921d2dc4edec7").scram_verifier(),
            None
        );
        assert_eq!(Secret::Plain(String::new()).scram_verifier(), None);
    }

    #[test]
    fn saslprep_applies_to_plain_secrets() {
        // U+00A0 (no-break space) maps to a plain space under SASLprep.
        let verifier = Secret::Plain("pass\u{a0}word".to_owned())
            .scram_verifier()
            .unwrap();
        let prepared =
            ScramVerifier::from_password("pass word", &verifier.salt, verifier.iterations);
        assert_eq!(verifier, prepared);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let secrets = [
            Secret::Plain("hunter2".to_owned()),
            Secret::Md5("md54ab2c5d00339c4b2a4e921d2dc4edec7".to_owned()),
            Secret::parse(SECRET_VERIFIER),
        ];
        let shown: Vec<String> = secrets.iter().map(|s| format!("{s:?} {s:#?}")).collect();
        assert_eq!(
            shown[0],
            "Secret::Plain(<redacted>) Secret::Plain(<redacted>)"
        );
        assert!(shown[1].starts_with("Secret::Md5(<redacted>)"));
        assert!(shown[2].starts_with("Secret::Scram(<redacted>)"));
        let verifier = ScramVerifier::parse(SECRET_VERIFIER).unwrap();
        assert_eq!(format!("{verifier:?}"), "ScramVerifier(<redacted>)");
    }
}
