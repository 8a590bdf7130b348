//! The extended-protocol messages that name a prepared statement (Parse,
//! Bind, Describe, Close), decoded only far enough to read that name and
//! written back with another one. Everything after the name stays bytes.

use bytes::{BufMut, BytesMut};

pub use crate::protocol::backend::{CLOSE_COMPLETE, PARSE_COMPLETE};
pub use crate::protocol::frontend::{BIND, CLOSE, DESCRIBE, PARSE};

/// Describe/Close target kinds.
pub const STATEMENT: u8 = b'S';
pub const PORTAL: u8 = b'P';

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} message")]
pub struct Malformed(pub &'static str);

/// Splits a NUL-terminated string off the front of `body`.
fn cstr<'a>(body: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), Malformed> {
    let end = body.iter().position(|&b| b == 0).ok_or(Malformed(what))?;
    Ok((&body[..end], &body[end + 1..]))
}

/// Parse: `name\0 query\0 int16 n, int32 type[n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    /// Query text and parameter types: what the statement is, whatever
    /// the client calls it.
    pub definition: &'a [u8],
}

impl<'a> Parse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let (name, definition) = cstr(body, "Parse")?;
        let (_query, types) = cstr(definition, "Parse")?;
        if types.len() < 2 {
            return Err(Malformed("Parse"));
        }
        let n = i16::from_be_bytes([types[0], types[1]]);
        if n < 0 || types.len() != 2 + 4 * n as usize {
            return Err(Malformed("Parse"));
        }
        Ok(Parse { name, definition })
    }

    pub fn encode(out: &mut BytesMut, name: &[u8], definition: &[u8]) {
        message(out, PARSE, name.len() + 1 + definition.len(), |b| {
            b.put_slice(name);
            b.put_u8(0);
            b.put_slice(definition);
        });
    }
}

/// Bind: `portal\0 statement\0` then formats, values and result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let (portal, after) = cstr(body, "Bind")?;
        let (statement, rest) = cstr(after, "Bind")?;
        Ok(Bind {
            portal,
            statement,
            rest,
        })
    }

    /// The same Bind naming `statement` instead.
    pub fn encode_as(&self, out: &mut BytesMut, statement: &[u8]) {
        let len = self.portal.len() + statement.len() + 2 + self.rest.len();
        message(out, BIND, len, |b| {
            b.put_slice(self.portal);
            b.put_u8(0);
            b.put_slice(statement);
            b.put_u8(0);
            b.put_slice(self.rest);
        });
    }
}

/// Describe or Close: `kind ('S' | 'P'), name\0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

impl<'a> Target<'a> {
    pub fn decode(body: &'a [u8], what: &'static str) -> Result<Self, Malformed> {
        let (&kind, rest) = body.split_first().ok_or(Malformed(what))?;
        if kind != STATEMENT && kind != PORTAL {
            return Err(Malformed(what));
        }
        let (name, tail) = cstr(rest, what)?;
        if !tail.is_empty() {
            return Err(Malformed(what));
        }
        Ok(Target { kind, name })
    }

    pub fn encode(out: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
        message(out, tag, name.len() + 2, |b| {
            b.put_u8(kind);
            b.put_slice(name);
            b.put_u8(0);
        });
    }
}

/// ParseComplete or CloseComplete, as pgwolf answers for the server.
pub fn complete(out: &mut BytesMut, tag: u8) {
    out.put_u8(tag);
    out.put_i32(4);
}

fn message(out: &mut BytesMut, tag: u8, body_len: usize, f: impl FnOnce(&mut BytesMut)) {
    out.reserve(5 + body_len);
    out.put_u8(tag);
    out.put_i32((body_len + 4) as i32);
    let start = out.len();
    f(out);
    debug_assert_eq!(out.len() - start, body_len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::HEADER_LEN;

    fn body(msg: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
        assert_eq!(len + 1, msg.len(), "length field");
        &msg[HEADER_LEN..]
    }

    fn definition(query: &str, types: &[u32]) -> Vec<u8> {
        let mut d = query.as_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&(types.len() as i16).to_be_bytes());
        for t in types {
            d.extend_from_slice(&t.to_be_bytes());
        }
        d
    }

    #[test]
    fn parse_round_trip() {
        let def = definition("SELECT $1::int", &[23]);
        let mut out = BytesMut::new();
        Parse::encode(&mut out, b"S_1", &def);
        assert_eq!(out[0], PARSE);
        let p = Parse::decode(body(&out)).unwrap();
        assert_eq!(p.name, b"S_1");
        assert_eq!(p.definition, &def[..]);
    }

    #[test]
    fn unnamed_parse_without_types() {
        let def = definition("SELECT 1", &[]);
        let mut out = BytesMut::new();
        Parse::encode(&mut out, b"", &def);
        let p = Parse::decode(body(&out)).unwrap();
        assert_eq!(p.name, b"");
    }

    #[test]
    fn malformed_parse_is_refused() {
        assert!(Parse::decode(b"S_1").is_err(), "no NUL after the name");
        assert!(
            Parse::decode(b"S_1\0SELECT 1").is_err(),
            "no NUL after the query"
        );
        assert!(Parse::decode(b"S_1\0SELECT 1\0\0").is_err(), "short count");
        assert!(
            Parse::decode(b"S_1\0SELECT 1\0\0\x01").is_err(),
            "count 1, no type"
        );
        assert!(
            Parse::decode(b"S_1\0SELECT 1\0\xff\xff").is_err(),
            "negative count"
        );
    }

    #[test]
    fn bind_renamed_keeps_everything_else() {
        let rest = b"\0\x01\0\x01\0\0\0\x0242\0\0";
        let mut orig = BytesMut::new();
        let b = Bind {
            portal: b"",
            statement: b"S_1",
            rest,
        };
        b.encode_as(&mut orig, b"S_1");
        let decoded = Bind::decode(body(&orig)).unwrap();
        assert_eq!(decoded, b);
        let mut renamed = BytesMut::new();
        decoded.encode_as(&mut renamed, b"pgwolf_00000000000000ff");
        let r = Bind::decode(body(&renamed)).unwrap();
        assert_eq!(r.statement, b"pgwolf_00000000000000ff");
        assert_eq!(r.portal, b"");
        assert_eq!(r.rest, rest);
    }

    #[test]
    fn target_round_trip_and_checks() {
        let mut out = BytesMut::new();
        Target::encode(&mut out, DESCRIBE, STATEMENT, b"S_2");
        let t = Target::decode(body(&out), "Describe").unwrap();
        assert_eq!((t.kind, t.name), (STATEMENT, &b"S_2"[..]));
        assert!(Target::decode(b"XS_2\0", "Describe").is_err(), "bad kind");
        assert!(Target::decode(b"SS_2", "Close").is_err(), "no NUL");
        assert!(
            Target::decode(b"SS_2\0junk", "Close").is_err(),
            "trailing bytes"
        );
        assert!(Target::decode(b"", "Close").is_err(), "empty");
    }

    #[test]
    fn complete_messages() {
        let mut out = BytesMut::new();
        complete(&mut out, PARSE_COMPLETE);
        complete(&mut out, CLOSE_COMPLETE);
        assert_eq!(&out[..], b"1\0\0\0\x043\0\0\0\x04");
    }
}
