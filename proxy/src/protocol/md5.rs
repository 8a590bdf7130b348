//! md5 password exchange (AuthenticationMD5Password), both directions.
//!
//! Owns computing and checking `"md5" + hex(md5(hex(md5(password + user)) +
//! salt))`. Sans-I/O: the caller frames the messages. Never logs or returns
//! the expected response in an error.

use super::secret::Secret;
use ::md5::{Digest, Md5};
use rand::RngCore;
use subtle::ConstantTimeEq;

/// A fresh salt for one AuthenticationMD5Password request. It must be random
/// per attempt, or a captured response could be replayed.
pub fn md5_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

/// Checks a client's PasswordMessage body (without its trailing NUL) against
/// the stored secret. A SCRAM verifier cannot check an md5 response, and an
/// empty password never authenticates (as in PostgreSQL).
pub fn verify_md5(secret: &Secret, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    if matches!(secret, Secret::Plain(password) if password.is_empty()) {
        return false;
    }
    match md5_client_response(secret, user, salt) {
        // Length is public (always 35), only the contents need constant time.
        Some(expected) => expected.as_bytes().ct_eq(response).into(),
        None => false,
    }
}

/// The response the proxy itself sends when a server asks for md5, from a
/// plaintext password or a stored md5 hash (which is all md5 needs: the hash
/// is password-equivalent). `None` for a SCRAM verifier.
pub fn md5_client_response(secret: &Secret, user: &str, salt: [u8; 4]) -> Option<String> {
    let inner = match secret {
        Secret::Plain(password) => hex_md5(&[password.as_bytes(), user.as_bytes()]),
        Secret::Md5(hash) => hash.strip_prefix("md5")?.to_owned(),
        Secret::Scram(_) => return None,
    };
    Some(format!("md5{}", hex_md5(&[inner.as_bytes(), &salt])))
}

fn hex_md5(parts: &[&[u8]]) -> String {
    let mut md5 = Md5::new();
    for part in parts {
        md5.update(part);
    }
    format!("{:x}", md5.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;
    use postgres_protocol::password;

    const SALT: [u8; 4] = [0x2a, 0x3d, 0x8f, 0xe0];

    #[test]
    fn known_vector() {
        // postgres-protocol's own test vector.
        let secret = Secret::Plain("password".to_owned());
        let response = md5_client_response(&secret, "md5_user", SALT).unwrap();
        assert_eq!(response, "md562af4dd09bbb41884907a838a3233294");
        assert!(verify_md5(&secret, "md5_user", SALT, response.as_bytes()));
    }

    #[test]
    fn plain_and_md5_secrets_verify_a_real_client() {
        let salt = md5_salt();
        let response = md5_hash(b"md5user", b"secret", salt);
        let stored = Secret::parse(&password::md5(b"secret", "md5user"));
        assert!(matches!(stored, Secret::Md5(_)));
        for secret in [Secret::Plain("secret".to_owned()), stored] {
            assert!(verify_md5(&secret, "md5user", salt, response.as_bytes()));
            assert_eq!(
                md5_client_response(&secret, "md5user", salt).as_deref(),
                Some(response.as_str())
            );
        }
    }

    #[test]
    fn rejects_wrong_password_user_salt_and_garbage() {
        let secret = Secret::Plain("secret".to_owned());
        let good = md5_hash(b"md5user", b"secret", SALT);
        assert!(verify_md5(&secret, "md5user", SALT, good.as_bytes()));

        let wrong_password = md5_hash(b"md5user", b"Secret", SALT);
        let wrong_user = md5_hash(b"other", b"secret", SALT);
        let wrong_salt = md5_hash(b"md5user", b"secret", [0, 0, 0, 0]);
        let with_nul = format!("{good}\0");
        for response in [
            wrong_password.as_str(),
            wrong_user.as_str(),
            wrong_salt.as_str(),
            with_nul.as_str(),
            &good[..34],
            "",
            "secret",
        ] {
            assert!(
                !verify_md5(&secret, "md5user", SALT, response.as_bytes()),
                "{response:?}"
            );
        }
    }

    #[test]
    fn scram_and_empty_secrets_never_verify() {
        let scram = Secret::parse(&password::scram_sha_256(b"secret"));
        assert!(matches!(scram, Secret::Scram(_)));
        let response = md5_hash(b"md5user", b"secret", SALT);
        assert!(!verify_md5(&scram, "md5user", SALT, response.as_bytes()));
        assert_eq!(md5_client_response(&scram, "md5user", SALT), None);

        let empty = Secret::Plain(String::new());
        let response = md5_hash(b"md5user", b"", SALT);
        assert!(!verify_md5(&empty, "md5user", SALT, response.as_bytes()));
    }

    #[test]
    fn salts_differ() {
        // 2^-32 chance of a false failure per pair; three draws make it moot.
        let salts = [md5_salt(), md5_salt(), md5_salt()];
        assert!(salts[0] != salts[1] || salts[1] != salts[2]);
    }
}
