//! Messages the proxy itself sends to clients (it forwards the server's
//! untouched): authentication requests, errors, parameters, keys, ready.

use bytes::{BufMut, BytesMut};

pub const AUTHENTICATION: u8 = b'R';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const PARAMETER_STATUS: u8 = b'S';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const ROW_DESCRIPTION: u8 = b'T';
pub const DATA_ROW: u8 = b'D';
pub const EMPTY_QUERY: u8 = b'I';
pub const PARSE_COMPLETE: u8 = b'1';
pub const BIND_COMPLETE: u8 = b'2';
pub const CLOSE_COMPLETE: u8 = b'3';
pub const PARAMETER_DESCRIPTION: u8 = b't';
pub const NO_DATA: u8 = b'n';
pub const PORTAL_SUSPENDED: u8 = b's';
pub const COPY_IN_RESPONSE: u8 = b'G';

/// ReadyForQuery's transaction status: idle, in a transaction block, in a
/// failed one.
pub const TX_IDLE: u8 = b'I';
pub const TX_BLOCK: u8 = b'T';
pub const TX_FAILED: u8 = b'E';

const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// Writes `tag`, a length placeholder, the body from `f`, then the length.
pub fn message(out: &mut BytesMut, tag: u8, f: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    f(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

pub fn auth_ok(out: &mut BytesMut) {
    message(out, AUTHENTICATION, |b| b.put_i32(AUTH_OK));
}

pub fn auth_cleartext(out: &mut BytesMut) {
    message(out, AUTHENTICATION, |b| b.put_i32(AUTH_CLEARTEXT));
}

pub fn auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    message(out, AUTHENTICATION, |b| {
        b.put_i32(AUTH_MD5);
        b.put_slice(&salt);
    });
}

pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    message(out, AUTHENTICATION, |b| {
        b.put_i32(AUTH_SASL);
        for m in mechanisms {
            cstr(b, m);
        }
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    message(out, AUTHENTICATION, |b| {
        b.put_i32(AUTH_SASL_CONTINUE);
        b.put_slice(data);
    });
}

pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    message(out, AUTHENTICATION, |b| {
        b.put_i32(AUTH_SASL_FINAL);
        b.put_slice(data);
    });
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    message(out, PARAMETER_STATUS, |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    message(out, BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    message(out, READY_FOR_QUERY, |b| b.put_u8(status));
}

/// Severity of an error the proxy reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// ErrorResponse with severity (localized and not), SQLSTATE and message.
pub fn error_response(out: &mut BytesMut, severity: Severity, code: &str, text: &str) {
    message(out, ERROR_RESPONSE, |b| {
        b.put_u8(b'S');
        cstr(b, severity.as_str());
        b.put_u8(b'V');
        cstr(b, severity.as_str());
        b.put_u8(b'C');
        cstr(b, code);
        b.put_u8(b'M');
        cstr(b, text);
        b.put_u8(0);
    });
}

/// Parses a ParameterStatus body into (name, value).
pub fn parse_parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut it = body.split(|b| *b == 0);
    let name = std::str::from_utf8(it.next()?).ok()?;
    let value = std::str::from_utf8(it.next()?).ok()?;
    Some((name, value))
}

/// Reads the SQLSTATE and message of an ErrorResponse/NoticeResponse body.
pub fn parse_error_fields(body: &[u8]) -> ErrorFields<'_> {
    let mut f = ErrorFields::default();
    for field in body.split(|b| *b == 0) {
        let Some((&kind, value)) = field.split_first() else {
            continue;
        };
        let value = std::str::from_utf8(value).unwrap_or("");
        match kind {
            b'V' => f.severity = value,
            b'S' if f.severity.is_empty() => f.severity = value,
            b'C' => f.code = value,
            b'M' => f.message = value,
            _ => {}
        }
    }
    f
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::split_message;

    #[test]
    fn error_round_trip() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "28P01",
            "password authentication failed",
        );
        let (tag, body) = split_message(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(tag, ERROR_RESPONSE);
        let f = parse_error_fields(&body);
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "password authentication failed");
    }

    #[test]
    fn parameter_status_round_trip() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "TimeZone", "UTC");
        let (tag, body) = split_message(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(tag, PARAMETER_STATUS);
        assert_eq!(parse_parameter_status(&body), Some(("TimeZone", "UTC")));
    }

    #[test]
    fn ready_and_key() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, b'I');
        backend_key_data(&mut buf, 1, 2);
        assert_eq!(&buf[..6], &[b'Z', 0, 0, 0, 5, b'I']);
        let (tag, body) = {
            let mut rest = buf.split_off(6);
            split_message(&mut rest, 100).unwrap().unwrap()
        };
        assert_eq!(
            (tag, &body[..]),
            (BACKEND_KEY_DATA, &[0, 0, 0, 1, 0, 0, 0, 2][..])
        );
    }
}
