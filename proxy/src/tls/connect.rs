//! Server-facing TLS: `server_tls_sslmode` with libpq's meanings, the CA
//! that verifies servers, and pgwolf's own certificate for servers that ask
//! for one.

use super::verify::{AnyServerCert, ChainOnly};
use super::{certs, key, provider, roots, versions, TlsError};
use crate::config::{Config, SslMode};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Null until TLS is wanted: a disabled server side costs nothing.
#[derive(Default)]
pub struct ServerTls {
    pub mode: SslMode,
    config: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("server does not support TLS, but server_tls_sslmode is {0}")]
    Refused(&'static str),
    #[error("TLS handshake with the server failed: {0}")]
    Handshake(std::io::Error),
    #[error("server answered the TLS request with {0:#04x}")]
    BadAnswer(u8),
    #[error("server host {0} is not a valid TLS name")]
    Name(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServerTls {
    pub(super) fn load(cfg: &Config) -> Result<ServerTls, TlsError> {
        let mode = cfg.server_tls_sslmode;
        if mode == SslMode::Disable {
            return Ok(ServerTls::default());
        }
        let versions = versions("server_tls_protocols", &cfg.server_tls_protocols)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)?;
        let builder = if mode >= SslMode::VerifyCa {
            let roots = Arc::new(match &cfg.server_tls_ca_file {
                Some(ca) => roots("server_tls_ca_file", ca)?,
                None => system_roots()?,
            });
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::Setting {
                        setting: "server_tls_ca_file",
                        reason: e.to_string(),
                    })?;
            if mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        } else {
            // prefer/require (and allow) encrypt without checking who the
            // server is, as libpq does without a root certificate.
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider())))
        };
        let mut config = match (&cfg.server_tls_cert_file, &cfg.server_tls_key_file) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(
                    certs("server_tls_cert_file", c)?,
                    key("server_tls_key_file", k)?,
                )
                .map_err(|e| TlsError::File {
                    setting: "server_tls_key_file",
                    path: k.clone(),
                    reason: format!("does not go with server_tls_cert_file: {e}"),
                })?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) | (None, Some(_)) => {
                return Err(TlsError::Setting {
                    setting: "server_tls_cert_file",
                    reason: "and server_tls_key_file are set together or not at all".into(),
                })
            }
        };
        config.alpn_protocols = vec![super::ALPN_POSTGRESQL.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(ServerTls {
            mode,
            config: Some(Arc::new(config)),
        })
    }

    /// Asks the server for TLS on a fresh connection (SSLRequest) as the
    /// mode says, and returns the stream to log in over.
    pub async fn negotiate(
        &self,
        mut tcp: TcpStream,
        host: &str,
    ) -> Result<super::Stream, ServerTlsError> {
        let Some(config) = &self.config else {
            return Ok(super::Stream::Plain(tcp));
        };
        let mut request = bytes::BytesMut::with_capacity(8);
        crate::protocol::startup::encode_ssl_request(&mut request);
        tcp.write_all(&request).await?;
        // One byte and nothing more: bytes after it before the handshake
        // would be a man-in-the-middle's (CVE-2021-23222), so none is read.
        let answer = tcp.read_u8().await?;
        match answer {
            b'S' => {}
            b'N' if self.mode <= SslMode::Prefer => return Ok(super::Stream::Plain(tcp)),
            b'N' => return Err(ServerTlsError::Refused(self.mode.as_str())),
            other => return Err(ServerTlsError::BadAnswer(other)),
        }
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ServerTlsError::Name(host.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(ServerTlsError::Handshake)?;
        Ok(super::Stream::Connected(Box::new(tls)))
    }
}

/// Debian's CA bundle and the like, for verify-ca/verify-full without
/// server_tls_ca_file (what libpq calls `sslrootcert=system`).
fn system_roots() -> Result<rustls::RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Setting {
            setting: "server_tls_ca_file",
            reason: "is not set and no system CA certificate was found".into(),
        });
    }
    Ok(store)
}
