//! One connection, plain or TLS, on either side. An enum, not a trait
//! object: the pump polls it for every message and a match costs nothing
//! next to a virtual call per poll.
//!
//! TLS differs from a socket in two ways the callers must respect:
//! - a write can be accepted into rustls's buffer and not reach the socket
//!   yet, so whoever stops writing calls `poll_flush` while
//!   [`Stream::wants_flush`] holds;
//! - decrypted bytes can wait inside rustls with the socket drained, so
//!   readiness is [`Stream::poll_read_ready`], which knows about them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

pub enum Stream {
    Plain(TcpStream),
    /// A Unix socket, either side: PostgreSQL has no TLS over one.
    Unix(UnixStream),
    /// A client's TLS to pgwolf.
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// pgwolf's TLS to a server.
    Connected(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Plain($s) => $e,
            Stream::Unix($s) => $e,
            Stream::Accepted($s) => $e,
            Stream::Connected($s) => $e,
        }
    };
}

impl Stream {
    /// The TCP socket under it; None for a Unix socket.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Unix(_) => None,
            Stream::Accepted(s) => Some(s.get_ref().0),
            Stream::Connected(s) => Some(s.get_ref().0),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Accepted(_) | Stream::Connected(_))
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// The OS user id of a Unix socket's peer (peer authentication).
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(s) => s.peer_cred().ok().map(|c| c.uid()),
            _ => None,
        }
    }

    /// "TLSv1.3", "TLSv1.2", or "" for plain connections.
    pub fn tls_version(&self) -> &'static str {
        let version = match self {
            Stream::Plain(_) | Stream::Unix(_) => return "",
            Stream::Accepted(s) => s.get_ref().1.protocol_version(),
            Stream::Connected(s) => s.get_ref().1.protocol_version(),
        };
        match version {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        }
    }

    /// Protocol and cipher suite, e.g. `TLSv1.3/TLS13_AES_256_GCM_SHA384`
    /// (SHOW CLIENTS `tls`); "" for plain connections.
    pub fn describe(&self) -> String {
        let suite = match self {
            Stream::Plain(_) | Stream::Unix(_) => return String::new(),
            Stream::Accepted(s) => s.get_ref().1.negotiated_cipher_suite(),
            Stream::Connected(s) => s.get_ref().1.negotiated_cipher_suite(),
        };
        match suite {
            Some(s) => format!("{}/{:?}", self.tls_version(), s.suite()),
            None => self.tls_version().to_string(),
        }
    }

    /// The client's certificate, when it sent one (already verified against
    /// client_tls_ca_file by the handshake).
    pub fn peer_certificate(&self) -> Option<&rustls::pki_types::CertificateDer<'static>> {
        match self {
            Stream::Accepted(s) => s.get_ref().1.peer_certificates()?.first(),
            _ => None,
        }
    }

    /// Ready when a read would make progress: decrypted bytes or a
    /// close_notify already inside rustls, else the socket's readiness.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Unix(s) => return s.poll_read_ready(cx),
            Stream::Accepted(s) if s.get_ref().1.wants_read() => s.get_ref().0,
            Stream::Connected(s) if s.get_ref().1.wants_read() => s.get_ref().0,
            // Decrypted bytes or close_notify wait inside rustls.
            _ => return Poll::Ready(Ok(())),
        };
        tcp.poll_read_ready(cx)
    }

    /// TLS bytes rustls holds that the socket has not taken yet.
    pub fn wants_flush(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            Stream::Accepted(s) => s.get_ref().1.wants_write(),
            Stream::Connected(s) => s.get_ref().1.wants_write(),
        }
    }

    /// False when the peer closed or sent anything while nobody asked: an
    /// idle server connection with bytes waiting is not reusable.
    pub fn is_quiet(&mut self) -> bool {
        let would_block =
            |r: io::Result<usize>| matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        match self {
            Stream::Plain(s) => return would_block(s.try_read(&mut [0u8; 1])),
            Stream::Unix(s) => return would_block(s.try_read(&mut [0u8; 1])),
            _ => {}
        }
        // A TLS record may be a harmless post-handshake message (a session
        // ticket), so look through rustls: only plaintext or EOF counts.
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(Pin::new(self).poll_read(&mut cx, &mut buf), Poll::Pending)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
