//! Before authentication: refuse encryption requests ('N' until TLS lands),
//! and read the StartupMessage or CancelRequest.

use super::ClientError;
use crate::protocol::startup::{self, StartupPacket, StartupParams};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub enum First {
    Startup(StartupParams),
    Cancel { pid: i32, secret: i32 },
}

pub async fn negotiate(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<First, ClientError> {
    loop {
        match startup::parse(buf)? {
            Some(StartupPacket::Ssl | StartupPacket::GssEnc) => {
                // Not offered yet: the client may continue in plaintext.
                stream.write_all(b"N").await?;
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
