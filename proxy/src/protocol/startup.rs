//! The untagged packets a client sends first: StartupMessage, SSLRequest,
//! GSSENCRequest, CancelRequest.

use bytes::{Buf, BufMut, BytesMut};

/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// PostgreSQL's NAMEDATALEN - 1. It cuts a longer user or database name
/// in a startup packet to this many bytes before looking it up; pgwolf
/// does too (at a character boundary, so the name stays UTF-8), so an
/// over-long name means to pgwolf what it means to the server, and every
/// name a client sends is this short when it reaches pools, logs and
/// errors (PgBouncer's CVE-2012-4575 was one that was not).
pub const MAX_NAME_LEN: usize = 63;

const PROTOCOL_3_0: i32 = 196_608;
const CANCEL_REQUEST: i32 = 80_877_102;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    GssEnc,
    Cancel { pid: i32, secret: i32 },
    Startup(StartupParams),
}

/// The name/value pairs of a StartupMessage, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupParams(pub Vec<(String, String)>);

impl StartupParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("invalid startup packet length {0}")]
    BadLength(usize),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    Protocol { major: i32, minor: i32 },
    #[error("invalid startup packet layout")]
    Layout,
    #[error("startup packet is not valid UTF-8")]
    Utf8,
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
}

/// Parses one startup packet from the front of `buf`; `Ok(None)` when more
/// bytes are needed. Checks the length before waiting for the body, so a
/// huge claimed length is refused without allocating for it.
pub fn parse(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(StartupError::BadLength(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut pkt = buf.split_to(len);
    pkt.advance(4);
    let code = pkt.get_i32();
    match code {
        SSL_REQUEST if len == 8 => Ok(Some(StartupPacket::Ssl)),
        GSSENC_REQUEST if len == 8 => Ok(Some(StartupPacket::GssEnc)),
        CANCEL_REQUEST if len == 16 => Ok(Some(StartupPacket::Cancel {
            pid: pkt.get_i32(),
            secret: pkt.get_i32(),
        })),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => Err(StartupError::Layout),
        PROTOCOL_3_0 => parse_params(&pkt).map(|p| Some(StartupPacket::Startup(p))),
        other => Err(StartupError::Protocol {
            major: other >> 16,
            minor: other & 0xffff,
        }),
    }
}

fn parse_params(body: &[u8]) -> Result<StartupParams, StartupError> {
    // name\0value\0 ... \0
    let Some((&0, pairs)) = body.split_last() else {
        return Err(StartupError::Layout);
    };
    let mut out = Vec::new();
    if !pairs.is_empty() {
        let Some((&0, pairs)) = pairs.split_last() else {
            return Err(StartupError::Layout);
        };
        let fields: Vec<&[u8]> = pairs.split(|b| *b == 0).collect();
        if fields.len() % 2 != 0 {
            return Err(StartupError::Layout);
        }
        for kv in fields.chunks(2) {
            let k = std::str::from_utf8(kv[0]).map_err(|_| StartupError::Utf8)?;
            let v = std::str::from_utf8(kv[1]).map_err(|_| StartupError::Utf8)?;
            if k.is_empty() {
                return Err(StartupError::Layout);
            }
            let v = match k {
                "user" | "database" => clip_name(v),
                _ => v,
            };
            out.push((k.to_string(), v.to_string()));
        }
    }
    let params = StartupParams(out);
    if params.get("user").is_none_or(str::is_empty) {
        return Err(StartupError::NoUser);
    }
    Ok(params)
}

/// `name` cut to [`MAX_NAME_LEN`] bytes, at a character boundary.
fn clip_name(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Encodes a StartupMessage (the proxy's own login to a server).
pub fn encode_startup(params: &[(&str, &str)], out: &mut BytesMut) {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        out.put_slice(k.as_bytes());
        out.put_u8(0);
        out.put_slice(v.as_bytes());
        out.put_u8(0);
    }
    out.put_u8(0);
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Encodes an SSLRequest (pgwolf asking a server for TLS).
pub fn encode_ssl_request(out: &mut BytesMut) {
    out.put_i32(8);
    out.put_i32(SSL_REQUEST);
}

/// Encodes a CancelRequest (forwarded to the server a client is using).
pub fn encode_cancel(pid: i32, secret: i32, out: &mut BytesMut) {
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST);
    out.put_i32(pid);
    out.put_i32(secret);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut buf = BytesMut::new();
        encode_startup(&[("user", "app"), ("database", "db")], &mut buf);
        let whole = buf.clone();
        let mut part = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(parse(&mut part), Ok(None));
        let got = parse(&mut buf).unwrap().unwrap();
        let StartupPacket::Startup(p) = got else {
            panic!()
        };
        assert_eq!(p.get("user"), Some("app"));
        assert_eq!(p.get("database"), Some("db"));
        assert!(buf.is_empty());
    }

    #[test]
    fn names_are_cut_as_postgresql_cuts_them() {
        let long = "d".repeat(4_000);
        let accented = format!("{}é", "u".repeat(62));
        let mut buf = BytesMut::new();
        encode_startup(
            &[
                ("user", &accented),
                ("database", &long),
                ("application_name", &long),
            ],
            &mut buf,
        );
        let Ok(Some(StartupPacket::Startup(p))) = parse(&mut buf) else {
            panic!("a long name is no error")
        };
        assert_eq!(p.get("database"), Some(&long[..MAX_NAME_LEN]));
        assert_eq!(
            p.get("user"),
            Some(&accented[..62]),
            "not inside a character"
        );
        assert_eq!(p.get("application_name").map(str::len), Some(4_000));
    }

    #[test]
    fn cancel_round_trip() {
        let mut buf = BytesMut::new();
        encode_cancel(42, -7, &mut buf);
        assert_eq!(
            parse(&mut buf),
            Ok(Some(StartupPacket::Cancel {
                pid: 42,
                secret: -7
            }))
        );
    }

    #[test]
    fn ssl_and_gss() {
        let mut buf = BytesMut::from(&[0, 0, 0, 8, 4, 210, 22, 47][..]);
        assert_eq!(parse(&mut buf), Ok(Some(StartupPacket::Ssl)));
        let mut buf = BytesMut::from(&[0, 0, 0, 8, 4, 210, 22, 48][..]);
        assert_eq!(parse(&mut buf), Ok(Some(StartupPacket::GssEnc)));
    }

    #[test]
    fn refuses_garbage() {
        let mut huge = BytesMut::from(&[0x7f, 0, 0, 0][..]);
        assert!(matches!(parse(&mut huge), Err(StartupError::BadLength(_))));
        let mut v2 = BytesMut::from(&[0, 0, 0, 9, 0, 2, 0, 0, 0][..]);
        assert!(matches!(
            parse(&mut v2),
            Err(StartupError::Protocol { major: 2, .. })
        ));
        let mut nouser = BytesMut::new();
        encode_startup(&[("database", "db")], &mut nouser);
        assert_eq!(parse(&mut nouser), Err(StartupError::NoUser));
        let mut odd = BytesMut::from(&[0, 0, 0, 11, 0, 3, 0, 0, b'u', 0, 0][..]);
        assert_eq!(parse(&mut odd), Err(StartupError::Layout));
    }
}
