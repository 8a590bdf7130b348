//! The TLS protocol words of `client_tls_protocols`/`server_tls_protocols`,
//! checked when the config is validated and used when TLS is set up.

/// `*_tls_protocols`: PgBouncer's words (`secure`, `default`, `all`,
/// `tlsv1.2`, `tlsv1.3`, comma or colon separated). rustls has no TLS 1.0
/// or 1.1, so asking for only those is an error rather than a surprise.
pub fn tls_protocol_versions(
    value: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let (mut v12, mut v13) = (false, false);
    for word in value.split([',', ':', ' ']).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "secure" | "default" | "all" | "legacy" | "normal" => (v12, v13) = (true, true),
            "tlsv1.2" => v12 = true,
            "tlsv1.3" => v13 = true,
            "tlsv1.0" | "tlsv1.1" | "tlsv1" => {}
            other => {
                return Err(format!(
                    "unknown protocol `{other}` (secure, all, tlsv1.2, tlsv1.3)"
                ))
            }
        }
    }
    let mut versions = Vec::new();
    if v12 {
        versions.push(&rustls::version::TLS12);
    }
    if v13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err(format!(
            "`{value}` leaves no protocol pgwolf speaks (TLS 1.2 and 1.3)"
        ));
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::tls_protocol_versions as protocol_versions;

    #[test]
    fn protocol_words() {
        assert_eq!(protocol_versions("secure").unwrap().len(), 2);
        assert_eq!(protocol_versions("tlsv1.3").unwrap().len(), 1);
        assert_eq!(protocol_versions("tlsv1.1,tlsv1.2").unwrap().len(), 1);
        let e = protocol_versions("tlsv1.0").unwrap_err();
        assert!(e.contains("leaves no protocol"), "{e}");
        let e = protocol_versions("sslv3").unwrap_err();
        assert!(e.contains("unknown protocol `sslv3`"), "{e}");
    }
}
