//! One role's password and SCRAM verifier, and their place in a Secret.

use k8s_openapi::api::core::v1::Secret;
use pgwolf::auth::ScramVerifier;
use rand::distributions::Alphanumeric;
use rand::Rng;

/// Secret keys holding the password and the verifier.
pub const KEY_PASSWORD: &str = "password";
pub const KEY_VERIFIER: &str = "scram-verifier";

/// PostgreSQL's default for SCRAM-SHA-256 (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;
/// Alphanumeric only, so the password goes into URIs unescaped.
const PASSWORD_LEN: usize = 32;

/// A role's login secret. Debug never prints the password or verifier.
#[derive(Clone, PartialEq)]
pub struct Credential {
    pub user: String,
    pub password: String,
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub verifier: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn generate<R: Rng>(user: &str, rng: &mut R) -> Credential {
        let password: String = (0..PASSWORD_LEN)
            .map(|_| rng.sample(Alphanumeric) as char)
            .collect();
        let salt: [u8; 16] = rng.gen();
        let verifier = ScramVerifier::from_password(&password, &salt, SCRAM_ITERATIONS).encode();
        Credential {
            user: user.to_string(),
            password,
            verifier,
        }
    }

    /// The credential a Secret written by the controller holds, when it
    /// holds a password and a verifier that matches it; a Secret edited into
    /// a mismatch is treated as absent rather than trusted.
    pub fn from_secret(user: &str, secret: &Secret) -> Option<Credential> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let password = text(KEY_PASSWORD).filter(|p| !p.is_empty())?;
        let verifier = text(KEY_VERIFIER)?;
        let parsed = ScramVerifier::parse(&verifier)?;
        let again = ScramVerifier::from_password(&password, &parsed.salt, parsed.iterations);
        (again.encode() == verifier).then(|| Credential {
            user: user.to_string(),
            password,
            verifier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    fn secret_of(password: &str, verifier: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([
                (
                    KEY_PASSWORD.to_string(),
                    ByteString(password.as_bytes().to_vec()),
                ),
                (
                    KEY_VERIFIER.to_string(),
                    ByteString(verifier.as_bytes().to_vec()),
                ),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_match_their_verifier() {
        let c = Credential::generate("app", &mut StdRng::seed_from_u64(7));
        assert_eq!(c.password.len(), PASSWORD_LEN);
        assert!(c.password.chars().all(|ch| ch.is_ascii_alphanumeric()));
        assert!(
            c.verifier.starts_with("SCRAM-SHA-256$4096:"),
            "{}",
            c.verifier
        );
        let back = Credential::from_secret("app", &secret_of(&c.password, &c.verifier));
        assert_eq!(back, Some(c));
    }

    #[test]
    fn a_secret_whose_verifier_does_not_match_is_not_reused() {
        let c = Credential::generate("app", &mut StdRng::seed_from_u64(7));
        let other = Credential::generate("app", &mut StdRng::seed_from_u64(8));
        assert_eq!(
            Credential::from_secret("app", &secret_of(&c.password, &other.verifier)),
            None
        );
        assert_eq!(
            Credential::from_secret("app", &secret_of("", &c.verifier)),
            None
        );
        assert_eq!(Credential::from_secret("app", &Secret::default()), None);
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = Credential::generate("app", &mut StdRng::seed_from_u64(7));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains(&c.password) && !shown.contains("SCRAM"),
            "{shown}"
        );
    }
}
