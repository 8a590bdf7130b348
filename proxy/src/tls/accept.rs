//! Client-facing TLS: the rustls server config built from
//! `client_tls_*`, and what a client's certificate says about it.

use super::{certs, key, provider, required, roots, versions, TlsError};
use crate::config::{Config, SslMode};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

pub struct ClientTls {
    pub mode: SslMode,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl ClientTls {
    pub(super) fn load(cfg: &Config) -> Result<ClientTls, TlsError> {
        let why = "when client_tls_sslmode is not disable";
        let cert_file = required("client_tls_cert_file", &cfg.client_tls_cert_file, why)?;
        let key_file = required("client_tls_key_file", &cfg.client_tls_key_file, why)?;
        let chain = certs("client_tls_cert_file", cert_file)?;
        let key = key("client_tls_key_file", key_file)?;
        let versions = versions("client_tls_protocols", &cfg.client_tls_protocols)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)?;
        let verifies = cfg.client_tls_sslmode >= SslMode::VerifyCa;
        let builder = match &cfg.client_tls_ca_file {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots("client_tls_ca_file", ca)?),
                    provider(),
                );
                // Below verify-ca a certificate is optional, but one that is
                // presented is still checked: cert authentication relies on it.
                let verifier = if verifies {
                    verifier.build()?
                } else {
                    verifier.allow_unauthenticated().build()?
                };
                builder.with_client_cert_verifier(verifier)
            }
            None if verifies => {
                return Err(TlsError::Setting {
                    setting: "client_tls_ca_file",
                    reason: "must be set when client_tls_sslmode is verify-ca or verify-full"
                        .into(),
                })
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::File {
                setting: "client_tls_key_file",
                path: key_file.to_path_buf(),
                reason: format!("does not go with client_tls_cert_file: {e}"),
            })?;
        // Offered so PostgreSQL 17 clients may negotiate directly; a client
        // that sends no ALPN after SSLRequest is fine too.
        config.alpn_protocols = vec![super::ALPN_POSTGRESQL.to_vec()];
        Ok(ClientTls {
            mode: cfg.client_tls_sslmode,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Whether a client must use TLS.
    pub fn required(&self) -> bool {
        self.mode >= SslMode::Require
    }
}

/// The first CommonName in the subject of the client's certificate, which
/// `auth_type = cert` (and the HBA `cert` method) compares with the user.
pub fn peer_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
    use x509_cert::der::{Decode, Tag, Tagged};
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let cn = x509_cert::der::oid::db::rfc4519::CN;
    let value = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == cn)?
        .value
        .clone();
    let text = match value.tag() {
        Tag::Utf8String => value.decode_as::<Utf8StringRef<'_>>().ok()?.to_string(),
        Tag::PrintableString => value
            .decode_as::<PrintableStringRef<'_>>()
            .ok()?
            .to_string(),
        Tag::Ia5String => value.decode_as::<Ia5StringRef<'_>>().ok()?.to_string(),
        Tag::TeletexString => value.decode_as::<TeletexStringRef<'_>>().ok()?.to_string(),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::peer_common_name;
    use rustls::pki_types::CertificateDer;

    fn cert_for(cn: Option<&str>) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "pgwolf tests");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn common_name_of_a_certificate() {
        assert_eq!(
            peer_common_name(&cert_for(Some("app"))).as_deref(),
            Some("app")
        );
        assert_eq!(
            peer_common_name(&cert_for(Some("üser mit leerzeichen"))).as_deref(),
            Some("üser mit leerzeichen")
        );
        assert_eq!(peer_common_name(&cert_for(None)), None);
        assert_eq!(
            peer_common_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }
}
