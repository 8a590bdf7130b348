//! The controller's own connection to the primary, as the superuser, over
//! TLS: Spilo's pg_hba only takes `hostssl` from outside the pod. With a
//! CA (the one the controller issued, or `spec.tls.caSecretName`) the
//! certificate and its name are verified against it; without one (user
//! certificates and no CA named), as libpq's `sslmode=require`, only
//! encrypted, and SCRAM with channel binding is what keeps a man in the
//! middle from relaying the login.

use pgwolf::tls::verify::AnyServerCert;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{ChannelBinding, SslMode};

#[derive(Clone)]
pub struct Target {
    /// The name dialled and, with a CA, the name the certificate must carry.
    pub host: String,
    /// Connect here without resolving `host` (libpq's `hostaddr`).
    pub hostaddr: Option<std::net::IpAddr>,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    /// PEM; verify the server against it (and its name against `host`).
    pub ca_pem: Option<Vec<u8>>,
    /// `Require` towards Spilo; `Prefer` lets a test use a plain server.
    pub ssl_mode: SslMode,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target as `user@host:port/db` (its Debug: no password).
    #[error("the CA for {0} holds no usable certificate")]
    Ca(String),
    #[error("connecting to {target}: {detail}")]
    Connect { target: String, detail: String },
}

/// A connected client; its connection runs on a spawned task and ends when
/// the client is dropped.
pub async fn connect(target: &Target, timeout: Duration) -> Result<tokio_postgres::Client, Error> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(target)?);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .password(&target.password)
        .dbname(&target.dbname)
        .application_name("pgwolf-controller")
        .ssl_mode(target.ssl_mode)
        .channel_binding(ChannelBinding::Prefer)
        .connect_timeout(timeout);
    if let Some(addr) = target.hostaddr {
        config.hostaddr(addr);
    }
    let fail = |detail: String| Error::Connect {
        target: format!("{target:?}"),
        detail,
    };
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(|e| {
            fail(match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => with_causes(&e),
            })
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("controller's Postgres connection ended: {e}");
        }
    });
    Ok(client)
}

/// tokio-postgres's Display stops at "error performing TLS handshake"; the
/// why (an unknown issuer, a name mismatch) is in the source chain.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn tls_config(target: &Target) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = match &target.ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pemfile_certs(pem);
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Ca(format!("{target:?}")));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => return Ok(unverified()),
    };
    Ok(config)
}

/// TLS that encrypts without checking the certificate, as libpq's
/// sslmode=require: for the pooler's admin console, dialled by pod IP
/// (which no certificate names) with a SCRAM login that needs no secrecy
/// from the channel.
pub fn unverified() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth()
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}
