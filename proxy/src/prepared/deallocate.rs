//! SQL `DEALLOCATE name` of a statement the client prepared with the
//! protocol. The server knows such a statement only as `pgwolf_<id>`, so
//! passing the SQL on would fail with 26000 ("does not exist"); pgwolf
//! forgets the client's name and answers itself. The server's copy stays
//! cached for the next client that prepares the same text, as with Close.

use super::statements::ClientStatements;
use crate::protocol::backend::{self, Severity, COMMAND_COMPLETE};
use bytes::{BufMut, BytesMut};

/// The statement name of a simple Query body that is exactly one
/// `DEALLOCATE [PREPARE] name` (an optional `;`), as PostgreSQL folds it:
/// unquoted names lowered, quoted ones kept with `""` unescaped. `ALL`, a
/// second statement, comments or anything unusual give None, and the query
/// goes to the server unchanged.
pub fn target(body: &[u8]) -> Option<Vec<u8>> {
    let sql = body.strip_suffix(b"\0")?;
    let mut rest = trim(sql);
    rest = keyword(rest, b"deallocate")?;
    if let Some(after) = keyword(rest, b"prepare") {
        rest = after;
    }
    let (name, after) = identifier(rest)?;
    let after = trim(after);
    let after = after.strip_prefix(b";").map(trim).unwrap_or(after);
    if !after.is_empty() || (name == b"all" && !rest.starts_with(b"\"")) {
        return None;
    }
    Some(name)
}

/// Answers a DEALLOCATE of a name in `names` the way the server would at
/// transaction status `status`, and forgets the name. False, with nothing
/// written or changed, when the query is anything else.
pub fn answer(names: &mut ClientStatements, body: &[u8], status: u8, out: &mut BytesMut) -> bool {
    let Some(name) = target(body) else {
        return false;
    };
    if names.get(&name).is_none() {
        return false;
    }
    if status == backend::TX_FAILED {
        // In a failed transaction the server ignores every command; so does
        // pgwolf, and the name stays.
        backend::error_response(
            out,
            Severity::Error,
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        );
    } else {
        names.remove(&name);
        let tag = b"DEALLOCATE\0";
        out.put_u8(COMMAND_COMPLETE);
        out.put_u32(4 + tag.len() as u32);
        out.extend_from_slice(tag);
    }
    backend::ready_for_query(out, status);
    true
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// `s` after `word` (case-insensitive) and the whitespace that must follow it.
fn keyword<'a>(s: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..word.len())?;
    let after = &s[word.len()..];
    let separated =
        after.first().is_some_and(|c| c.is_ascii_whitespace()) || after.first() == Some(&b'"');
    (head.eq_ignore_ascii_case(word) && separated).then(|| after.trim_ascii_start())
}

fn identifier(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    if let Some(quoted) = s.strip_prefix(b"\"") {
        let mut name = Vec::new();
        let mut i = 0;
        loop {
            match (quoted.get(i), quoted.get(i + 1)) {
                (Some(b'"'), Some(b'"')) => {
                    name.push(b'"');
                    i += 2;
                }
                (Some(b'"'), _) => return (!name.is_empty()).then_some((name, &quoted[i + 1..])),
                (Some(&c), _) => {
                    name.push(c);
                    i += 1;
                }
                (None, _) => return None,
            }
        }
    }
    let end = s
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
        .unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty() || name[0].is_ascii_digit() || name[0] == b'$' {
        return None;
    }
    Some((name.to_ascii_lowercase(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::statements::Statement;
    use bytes::Bytes;

    fn q(sql: &str) -> Vec<u8> {
        let mut b = sql.as_bytes().to_vec();
        b.push(0);
        b
    }

    #[test]
    fn recognises_one_deallocate_as_postgres_folds_it() {
        assert_eq!(target(&q("DEALLOCATE _pg3_0")).unwrap(), b"_pg3_0");
        assert_eq!(target(&q("  deallocate prepare S_1 ; ")).unwrap(), b"s_1");
        assert_eq!(target(&q("DEALLOCATE \"S_1\"")).unwrap(), b"S_1");
        assert_eq!(target(&q("DEALLOCATE \"a\"\"b\";")).unwrap(), b"a\"b");
        assert_eq!(target(&q("DEALLOCATE \"all\"")).unwrap(), b"all");
        assert_eq!(target(&q("DEALLOCATE prepare")).unwrap(), b"prepare");
    }

    #[test]
    fn anything_else_goes_to_the_server() {
        for sql in [
            "DEALLOCATE ALL",
            "deallocate prepare all",
            "DEALLOCATE a; SELECT 1",
            "DEALLOCATE a b",
            "DEALLOCATEa",
            "DEALLOCATE",
            "DEALLOCATE \"unterminated",
            "DEALLOCATE \"\"",
            "DEALLOCATE 1a",
            "SELECT 1",
            "DEALLOCATE a -- why",
        ] {
            assert_eq!(target(&q(sql)), None, "{sql}");
        }
        assert_eq!(target(b"DEALLOCATE a"), None, "no terminating NUL");
    }

    #[test]
    fn answers_known_names_at_the_transaction_status() {
        let mut names = ClientStatements::default();
        names.define(b"s1", Statement::new(Bytes::from_static(b"SELECT 1\0\0\0")));
        let mut out = BytesMut::new();
        assert!(!answer(&mut names, &q("DEALLOCATE other"), b'I', &mut out));
        assert!(out.is_empty());

        assert!(answer(&mut names, &q("DEALLOCATE s1"), b'E', &mut out));
        assert_eq!(out[0], b'E');
        assert!(out.ends_with(&[b'Z', 0, 0, 0, 5, b'E']));
        assert!(
            names.get(b"s1").is_some(),
            "ignored in a failed transaction"
        );

        out.clear();
        assert!(answer(&mut names, &q("DEALLOCATE s1"), b'T', &mut out));
        assert_eq!(&out[..], b"C\0\0\0\x0fDEALLOCATE\0Z\0\0\0\x05T");
        assert!(names.get(b"s1").is_none());
    }
}
