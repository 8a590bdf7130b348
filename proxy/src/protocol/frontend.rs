//! Frontend message tags the proxy looks at, and the few it sends itself.

use bytes::{BufMut, BytesMut};

pub const QUERY: u8 = b'Q';
pub const SYNC: u8 = b'S';
pub const FUNCTION_CALL: u8 = b'F';
pub const TERMINATE: u8 = b'X';
pub const PASSWORD: u8 = b'p';
pub const FLUSH: u8 = b'H';
pub const EXECUTE: u8 = b'E';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const DESCRIBE: u8 = b'D';
pub const CLOSE: u8 = b'C';

/// A simple Query message.
pub fn query(out: &mut BytesMut, sql: &str) {
    out.put_u8(QUERY);
    out.put_i32((sql.len() + 5) as i32);
    out.put_slice(sql.as_bytes());
    out.put_u8(0);
}

pub fn terminate(out: &mut BytesMut) {
    out.put_u8(TERMINATE);
    out.put_i32(4);
}

/// Quotes a value as a SQL string literal, safe whatever
/// standard_conforming_strings is (E'' form when a backslash is present).
pub fn quote_literal(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        s.push('E');
    }
    s.push('\'');
    for c in value.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_literal("UTC"), "'UTC'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
    }

    #[test]
    fn query_layout() {
        let mut b = BytesMut::new();
        query(&mut b, "SELECT 1");
        assert_eq!(&b[..], b"Q\0\0\0\x0dSELECT 1\0");
    }
}
