//! PgBouncer's userlist.txt: `"user" "password"` per line.
//!
//! Owns parsing the file into secrets. It must not put password text into
//! errors or logs: errors name the line and what is wrong with it, nothing
//! more.

use super::Secret;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Users and their secrets from an auth file.
///
/// `Debug` is safe to log: it shows user names and the kind of each secret.
#[derive(Debug, Default, Clone)]
pub struct AuthFile {
    users: HashMap<String, Secret>,
    /// `auth_hba_file`'s rules, loaded and reloaded with the auth file.
    pub hba: Option<super::hba::Hba>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read auth file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `line` counts from 1. `reason` is fixed text so that it can never
    /// carry a password.
    #[error("auth file line {line}: {reason}")]
    Syntax { line: usize, reason: &'static str },
    #[error(transparent)]
    Hba(#[from] super::hba::HbaError),
}

impl AuthFile {
    /// Parses userlist.txt text. Blank lines and lines starting with `;` or
    /// `#` are skipped; text after the second field is ignored, as PgBouncer
    /// does. A user listed twice keeps the last password, also as PgBouncer.
    pub fn parse(text: &str) -> Result<AuthFile, AuthFileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let syntax = |reason| AuthFileError::Syntax {
                line: index + 1,
                reason,
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with([';', '#']) {
                continue;
            }
            let (user, rest) = quoted_field(line).map_err(syntax)?;
            if user.is_empty() {
                return Err(syntax("empty user name"));
            }
            let rest = rest.trim_start();
            if rest.is_empty() {
                return Err(syntax("missing password field"));
            }
            let (password, _ignored) = quoted_field(rest).map_err(syntax)?;
            users.insert(user, Secret::parse(&password));
        }
        Ok(AuthFile { users, hba: None })
    }

    /// Reads and parses an auth file.
    pub fn load(path: &Path) -> Result<AuthFile, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| AuthFileError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text)
    }

    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// User names, sorted (never the secrets).
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.users.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// User names, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &str> + '_ {
        self.users.keys().map(String::as_str)
    }
}

/// Reads one `"..."` field at the start of `s`, where `""` stands for one
/// `"`. Returns the unquoted value and what follows the closing quote.
fn quoted_field(s: &str) -> Result<(String, &str), &'static str> {
    let body = s
        .strip_prefix('"')
        .ok_or("expected a double-quoted field")?;
    let mut value = String::new();
    let mut rest = body;
    loop {
        let end = rest.find('"').ok_or("missing closing double quote")?;
        value.push_str(&rest[..end]);
        let after = &rest[end + 1..];
        match after.strip_prefix('"') {
            Some(more) => {
                value.push('"');
                rest = more;
            }
            None => return Ok((value, after)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramVerifier;

    const VERIFIER: &str = "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$8rrDg00OqaiWXJ7p+sCgHEIaBSHY89ZJl3mfIsf32oY=:05L1f+yZbiN8O0AnO40Og85NNRhvzTS57naKRWCcsIA=";

    fn plain(s: &str) -> Option<Secret> {
        Some(Secret::Plain(s.to_owned()))
    }

    #[test]
    fn parses_each_secret_kind() {
        let text = format!(
            "\"alice\" \"wonderland\"\n\
             \"bob\" \"md54ab2c5d00339c4b2a4e921d2dc4edec7\"\n\
             \"carol\" \"{VERIFIER}\"\n"
        );
        let file = AuthFile::parse(&text).unwrap();
        assert_eq!(file.len(), 3);
        assert!(!file.is_empty());
        assert_eq!(file.get("alice").cloned(), plain("wonderland"));
        assert!(matches!(file.get("bob"), Some(Secret::Md5(_))));
        assert_eq!(
            file.get("carol").cloned(),
            ScramVerifier::parse(VERIFIER).map(Secret::Scram)
        );
        assert_eq!(file.get("dave"), None);
        let mut users: Vec<&str> = file.users().collect();
        users.sort_unstable();
        assert_eq!(users, ["alice", "bob", "carol"]);
    }

    #[test]
    fn doubled_quotes_and_odd_characters() {
        let text = r#""we""ird" "pa""ss"""
"sp ace" "a b;#c"
"""" """""""#;
        let file = AuthFile::parse(text).unwrap();
        assert_eq!(file.get(r#"we"ird"#).cloned(), plain(r#"pa"ss""#));
        assert_eq!(file.get("sp ace").cloned(), plain("a b;#c"));
        assert_eq!(file.get(r#"""#).cloned(), plain(r#""""#));
        assert_eq!(file.len(), 3);
    }

    #[test]
    fn skips_comments_blanks_and_trailing_text() {
        let text = "\u{feff}; pgbouncer comment\n\
                    # hash comment\n\
                    \n   \t\n\
                    \t \"user\"\t\"pw\" trailing \"junk\" is ignored\r\n\
                    \"empty\" \"\"\n\
                    \"user\" \"second wins\"";
        let file = AuthFile::parse(text).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(file.get("user").cloned(), plain("second wins"));
        assert_eq!(file.get("empty").cloned(), plain(""));
        assert!(AuthFile::parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_carry_line_numbers_not_passwords() {
        let cases = [
            ("user \"pw\"", 1, "expected a double-quoted field"),
            ("\n\"user\" pw-leak", 2, "expected a double-quoted field"),
            ("; c\n\n\"user\"", 3, "missing password field"),
            ("\"user\" \"pw-leak", 1, "missing closing double quote"),
            ("\"user", 1, "missing closing double quote"),
            ("\"\" \"pw-leak\"", 1, "empty user name"),
        ];
        for (text, line, reason) in cases {
            let err = AuthFile::parse(text).unwrap_err();
            match &err {
                AuthFileError::Syntax { line: l, reason: r } => {
                    assert_eq!((*l, *r), (line, reason), "{text:?}");
                }
                other => panic!("unexpected {other:?}"),
            }
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("pw-leak"), "{shown}");
            assert!(shown.starts_with(&format!("auth file line {line}: {reason}")));
        }
    }

    #[test]
    fn debug_hides_passwords() {
        let file = AuthFile::parse("\"alice\" \"hunter2\"\n\"bob\" \"md5\"").unwrap();
        let shown = format!("{file:?}");
        assert!(shown.contains("alice") && shown.contains("Secret::Plain(<redacted>)"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("\"md5\""), "{shown}");
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userlist.txt");
        std::fs::write(&path, "\"alice\" \"wonderland\"\n").unwrap();
        assert_eq!(AuthFile::load(&path).unwrap().len(), 1);

        let missing = dir.path().join("missing.txt");
        let err = AuthFile::load(&missing).unwrap_err();
        assert!(matches!(err, AuthFileError::Io { .. }));
        assert!(err.to_string().contains("missing.txt"), "{err}");
    }
}
