//! Before authentication: encryption requests, then the StartupMessage or
//! CancelRequest. TLS comes two ways: SSLRequest answered 'S', or a TLS
//! ClientHello as the very first byte (PostgreSQL 17's direct negotiation).

use super::ClientError;
use crate::protocol::startup::{self, StartupPacket, StartupParams};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub enum First {
    Startup(StartupParams),
    Cancel { pid: i32, secret: i32 },
}

/// What the plaintext opening of a connection asks for.
pub enum Opening {
    First(First),
    /// Start TLS now: after an SSLRequest answered 'S' (`direct` false), or
    /// because the first byte was a TLS handshake record.
    Tls {
        direct: bool,
    },
}

/// TLS record type of a handshake message: no startup packet starts with
/// it, since their length field would then exceed 369 MB.
const TLS_HANDSHAKE: u8 = 0x16;

/// True when the client opens with a TLS handshake (direct TLS); looked
/// at without reading, so a startup packet is left for [`negotiate`].
pub async fn starts_tls(stream: &TcpStream) -> Result<bool, ClientError> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(ClientError::Eof);
    }
    Ok(first[0] == TLS_HANDSHAKE)
}

/// Reads until the client asks for TLS (when `tls` is offered) or sends its
/// first real packet. GSSENCRequest is refused with 'N', as is SSLRequest
/// without TLS configured (and always on a Unix socket, as PostgreSQL).
pub async fn negotiate(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    buf: &mut BytesMut,
    tls: bool,
) -> Result<Opening, ClientError> {
    loop {
        match startup::parse(buf)? {
            Some(StartupPacket::Ssl) if tls => {
                if !buf.is_empty() {
                    // Bytes sent after SSLRequest, before the handshake,
                    // would be read as if they had come over TLS
                    // (CVE-2021-23222 in libpq's terms).
                    return Err(ClientError::Protocol(
                        "received unencrypted data after SSL request".into(),
                    ));
                }
                stream.write_all(b"S").await?;
                return Ok(Opening::Tls { direct: false });
            }
            Some(StartupPacket::Ssl | StartupPacket::GssEnc) => {
                // The client may continue in plaintext.
                stream.write_all(b"N").await?;
            }
            Some(StartupPacket::Cancel { pid, secret }) => {
                return Ok(Opening::First(First::Cancel { pid, secret }))
            }
            Some(StartupPacket::Startup(p)) => return Ok(Opening::First(First::Startup(p))),
            None => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(ClientError::Eof);
                }
            }
        }
    }
}

/// The first packet inside TLS: a StartupMessage or CancelRequest. Another
/// encryption request there is a protocol violation.
pub async fn read_first(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<First, ClientError> {
    loop {
        match startup::parse(buf)? {
            Some(StartupPacket::Ssl | StartupPacket::GssEnc) => {
                return Err(ClientError::Protocol(
                    "encryption requested again inside TLS".into(),
                ))
            }
            Some(StartupPacket::Cancel { pid, secret }) => {
                return Ok(First::Cancel { pid, secret })
            }
            Some(StartupPacket::Startup(p)) => return Ok(First::Startup(p)),
            None => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(ClientError::Eof);
                }
            }
        }
    }
}
