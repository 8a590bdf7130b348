//! TLS on both sides, with rustls: the client-facing acceptor (SSLRequest
//! and direct negotiation, optional or required client certificates) and the
//! server-facing connector (libpq's sslmode ladder). Both are built from the
//! config's files at start and on every reload, so a replaced certificate
//! is used by the next connection while open ones keep theirs.

mod accept;
mod connect;
mod stream;
pub mod verify;

pub use accept::{peer_common_name, ClientTls};
pub use connect::{ServerTls, ServerTlsError};
pub use stream::Stream;

use crate::config::{Config, SslMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol name PostgreSQL 17 uses (and requires with direct TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {path}: {reason}")]
    File {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// What the running process uses for TLS; swapped whole on reload.
#[derive(Default)]
pub struct TlsSetup {
    /// None: client_tls_sslmode is disable.
    pub client: Option<ClientTls>,
    pub server: Arc<ServerTls>,
    /// When pgwolf's own certificates expire, by setting (/metrics, so an
    /// alert comes before clients are refused).
    pub expiry: Vec<(&'static str, std::time::SystemTime)>,
}

impl TlsSetup {
    /// Reads every certificate, key and CA file the config names. An error
    /// names the setting and the file.
    pub fn load(cfg: &Config) -> Result<TlsSetup, TlsError> {
        let client = match cfg.client_tls_sslmode {
            SslMode::Disable => None,
            _ => Some(ClientTls::load(cfg)?),
        };
        let mut expiry = Vec::new();
        for (setting, path) in [
            ("client_tls_cert_file", &cfg.client_tls_cert_file),
            ("server_tls_cert_file", &cfg.server_tls_cert_file),
        ] {
            if let Some(path) = path {
                if let Some(at) = certs(setting, path)?.first().and_then(not_after) {
                    expiry.push((setting, at));
                }
            }
        }
        Ok(TlsSetup {
            client,
            server: Arc::new(ServerTls::load(cfg)?),
            expiry,
        })
    }
}

/// When a certificate stops being valid (its `notAfter`).
fn not_after(cert: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let since_epoch = cert
        .tbs_certificate
        .validity
        .not_after
        .to_date_time()
        .unix_duration();
    Some(std::time::UNIX_EPOCH + since_epoch)
}

/// The process's crypto: ring, named here so no global default is needed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process default for libraries that build their own
/// rustls configs (kube's client). Without it rustls picks from its crate
/// features, and panics when a build enables both ring and aws-lc-rs, as a
/// workspace test build does once any dev-dependency pulls in aws-lc-rs.
pub fn install_default_provider() {
    // Err only means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn versions(
    setting: &'static str,
    value: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    crate::config::tls_protocol_versions(value)
        .map_err(|reason| TlsError::Setting { setting, reason })
}

fn certs(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The key's contents never reach a message: only its path and what is
/// wrong with it.
fn key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            _ => "not a readable PEM private key".into(),
        },
    })
}

fn roots(setting: &'static str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certs(setting, path)? {
        store.add(cert).map_err(|e| TlsError::File {
            setting,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

fn required<'a>(
    setting: &'static str,
    value: &'a Option<PathBuf>,
    why: &str,
) -> Result<&'a Path, TlsError> {
    value.as_deref().ok_or_else(|| TlsError::Setting {
        setting,
        reason: format!("must be set {why}"),
    })
}
