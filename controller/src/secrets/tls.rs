//! The certificates the controller issues when the manifest brings none:
//! a CA per cluster and a server certificate it signs, naming every
//! Service and pod host name a client or replica may dial. Generated once
//! and read back like the passwords, so a reconcile never replaces a
//! certificate that clients already trust.
//!
//! Only the server certificate is ever mounted into a pod; the CA's key
//! stays in its own Secret that no workload reads, and signs again when the
//! server certificate has to be remade (a Secret deleted or edited, the
//! host names changed). It is remade from the same key and subject, so what
//! clients pinned as `ca.crt` keeps verifying.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};

/// The CA outlives any one server certificate; neither is renewed by the
/// controller yet (see docs/kubernetes.md, "TLS").
const CA_YEARS: i16 = 10;
const SERVER_YEARS: i16 = 5;

/// PEM texts. Debug names no key.
#[derive(Clone, PartialEq)]
pub struct IssuedTls {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    /// The host names `cert` was made for, in order.
    pub names: Vec<String>,
}

impl std::fmt::Debug for IssuedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTls")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// What a reconcile found in the two Secrets; any part may be missing.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    /// `ca.crt` beside the server certificate.
    pub cert_ca: Option<String>,
    pub names: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("issuing the cluster's certificates: {0}")]
pub struct Error(#[from] rcgen::Error);

/// What the cluster's certificates should be: `found` where it is whole and
/// fits, the rest made anew. `subject` names the CA (`<namespace>/<cluster>`);
/// `today` is (year, month, day) in UTC, the start of any new validity.
pub fn resolve(
    found: &Found,
    subject: &str,
    names: &[String],
    today: (i16, i8, i8),
) -> Result<IssuedTls, Error> {
    let ca = match (&found.ca_cert, &found.ca_key) {
        (Some(cert), Some(key)) => KeyPair::from_pem(key)
            .ok()
            .filter(|k| public_key_matches(cert, k))
            .map(|k| (cert.clone(), k)),
        _ => None,
    };
    let (ca_cert, ca_key) = match ca {
        Some(ca) => ca,
        None => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params(subject, today)?.self_signed(&key)?.pem();
            (cert, key)
        }
    };
    let server_fits = found.names.as_deref() == Some(names)
        && found.cert_ca.as_deref() == Some(ca_cert.as_str())
        && matches!((&found.cert, &found.key), (Some(c), Some(k))
            if KeyPair::from_pem(k).is_ok_and(|k| public_key_matches(c, &k)));
    let (cert, key) = if server_fits {
        (
            found.cert.clone().unwrap_or_default(),
            found.key.clone().unwrap_or_default(),
        )
    } else {
        let issuer = ca_params(subject, today)?.self_signed(&ca_key)?;
        issue_server(&issuer, &ca_key, names, today)?
    };
    Ok(IssuedTls {
        ca_cert,
        ca_key: ca_key.serialize_pem(),
        cert,
        key,
        names: names.to_vec(),
    })
}

/// Today in UTC as (year, month, day), what [`resolve`] takes.
pub fn today() -> (i16, i8, i8) {
    let d = k8s_openapi::jiff::Timestamp::now()
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .date();
    (d.year(), d.month(), d.day())
}

/// Deterministic but for the validity: signing with the same key and
/// subject makes an issuer every certificate of this CA chains to.
fn ca_params(subject: &str, today: (i16, i8, i8)) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, format!("pgwolf CA {subject}"));
    p.distinguished_name
        .push(DnType::OrganizationName, "pgwolf-controller");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, today, CA_YEARS);
    Ok(p)
}

fn issue_server(
    issuer: &Certificate,
    issuer_key: &KeyPair,
    names: &[String],
    today: (i16, i8, i8),
) -> Result<(String, String), Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        p.distinguished_name.push(DnType::CommonName, first.clone());
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // ClientAuth too: replicas may present it to the primary.
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    // A serial unique per certificate: clients cache by issuer and serial.
    p.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    validity(&mut p, today, SERVER_YEARS);
    let cert = p.signed_by(&key, issuer, issuer_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// From the day before `today` (clocks differ) for `years`.
fn validity(p: &mut CertificateParams, (y, m, d): (i16, i8, i8), years: i16) {
    let (m, d) = (m as u8, (d as u8).clamp(1, 28));
    p.not_before = rcgen::date_time_ymd(y as i32, m, d) - std::time::Duration::from_secs(86_400);
    p.not_after = rcgen::date_time_ymd((y + years) as i32, m, d);
}

/// Whether `cert_pem`'s subject public key is `key`'s: a Secret edited to
/// pair a certificate with another key is remade, not served.
fn public_key_matches(cert_pem: &str, key: &KeyPair) -> bool {
    use rustls::pki_types::pem::PemObject;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    let spki = key.public_key_der();
    // The SubjectPublicKeyInfo is a contiguous DER element of the
    // certificate; finding it is enough to pair the two.
    der.windows(spki.len()).any(|w| w == spki.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["main.db.svc".into(), "*.main-pods.db.svc".into()]
    }

    fn found(t: &IssuedTls) -> Found {
        Found {
            ca_cert: Some(t.ca_cert.clone()),
            ca_key: Some(t.ca_key.clone()),
            cert: Some(t.cert.clone()),
            key: Some(t.key.clone()),
            cert_ca: Some(t.ca_cert.clone()),
            names: Some(t.names.clone()),
        }
    }

    const TODAY: (i16, i8, i8) = (2026, 12, 3);

    #[test]
    fn what_was_issued_is_kept() {
        let first = resolve(&Found::default(), "db/main", &names(), TODAY).unwrap();
        let again = resolve(&found(&first), "db/main", &names(), (2027, 5, 1)).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn a_lost_server_certificate_is_remade_by_the_same_ca() {
        let first = resolve(&Found::default(), "db/main", &names(), TODAY).unwrap();
        let mut lost = found(&first);
        lost.cert = None;
        let again = resolve(&lost, "db/main", &names(), TODAY).unwrap();
        assert_eq!(again.ca_cert, first.ca_cert);
        assert_eq!(again.ca_key, first.ca_key);
        assert_ne!(again.cert, first.cert);
        assert_ne!(again.key, first.key);

        let mut renamed = found(&first);
        renamed.names = Some(vec!["other".into()]);
        assert_ne!(
            resolve(&renamed, "db/main", &names(), TODAY).unwrap().cert,
            first.cert
        );
    }

    #[test]
    fn a_mismatched_key_is_not_trusted() {
        let first = resolve(&Found::default(), "db/main", &names(), TODAY).unwrap();
        let other = resolve(&Found::default(), "db/main", &names(), TODAY).unwrap();
        let mut mixed = found(&first);
        mixed.key = Some(other.key.clone());
        let again = resolve(&mixed, "db/main", &names(), TODAY).unwrap();
        assert_eq!(again.ca_cert, first.ca_cert);
        assert_ne!(again.key, other.key);

        let mut bad_ca = found(&first);
        bad_ca.ca_key = Some(other.ca_key.clone());
        let again = resolve(&bad_ca, "db/main", &names(), TODAY).unwrap();
        assert_ne!(
            again.ca_cert, first.ca_cert,
            "a CA whose key is gone is remade"
        );
    }

    /// The server certificate, remade or not, chains to the stored CA and
    /// names every host, as rustls (the pooler, the controller) checks it.
    #[test]
    fn the_server_certificate_verifies_against_the_ca_for_each_name() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let first = resolve(&Found::default(), "db/main", &names(), TODAY).unwrap();
        let mut lost = found(&first);
        lost.cert = None;
        let remade = resolve(&lost, "db/main", &names(), TODAY).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(first.ca_cert.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        for tls in [&first, &remade] {
            let cert = CertificateDer::from_pem_slice(tls.cert.as_bytes()).unwrap();
            for name in ["main.db.svc", "main-1.main-pods.db.svc"] {
                let name = ServerName::try_from(name).unwrap();
                verifier
                    .verify_server_cert(&cert, &[], &name, &[], now)
                    .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            }
            let wrong = ServerName::try_from("elsewhere.db.svc").unwrap();
            assert!(verifier
                .verify_server_cert(&cert, &[], &wrong, &[], now)
                .is_err());
        }
    }
}
