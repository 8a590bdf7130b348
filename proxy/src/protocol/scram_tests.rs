//! Tests of the SCRAM-SHA-256 exchange (`scram.rs`).

#[test]
fn initial_responses_frame_exactly() {
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&5i32.to_be_bytes());
    body.extend_from_slice(b"n,,n=");
    assert_eq!(
        super::parse_initial_response(&body),
        Some(("SCRAM-SHA-256", &b"n,,n="[..]))
    );
    let short = &body[..body.len() - 1];
    assert_eq!(super::parse_initial_response(short), None);
    let mut none = b"SCRAM-SHA-256\0".to_vec();
    none.extend_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(super::parse_initial_response(&none), None);
    assert_eq!(super::parse_initial_response(b"SCRAM-SHA-256"), None);
    assert_eq!(super::parse_initial_response(b"\xff\0\0\0\0\0"), None);
}

use super::*;
use crate::protocol::secret::Secret;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

fn server_for(password: &str) -> ScramServer {
    ScramServer::new(Secret::Plain(password.to_owned()).scram_verifier().unwrap())
}

/// Runs postgres-protocol's client against `server` up to the client's
/// final message; returns the client and that message.
fn client_until_final(
    server: &mut ScramServer,
    password: &str,
    binding: ChannelBinding,
) -> (ScramSha256, Vec<u8>) {
    let mut client = ScramSha256::new(password.as_bytes(), binding);
    let server_first = server
        .client_first(SCRAM_SHA_256, client.message())
        .unwrap();
    client.update(&server_first).unwrap();
    let client_final = client.message().to_vec();
    (client, client_final)
}

fn exchange(
    server: &mut ScramServer,
    password: &str,
    binding: ChannelBinding,
) -> Result<(), ScramError> {
    let (mut client, client_final) = client_until_final(server, password, binding);
    let server_final = server.client_final(&client_final)?;
    client
        .finish(&server_final)
        .expect("client accepts the server signature");
    Ok(())
}

#[test]
fn real_client_authenticates_against_plain_and_stored_secrets() {
    let stored = postgres_protocol::password::scram_sha_256(b"correct horse");
    let from_stored = Secret::parse(&stored).scram_verifier().unwrap();
    for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
        let mut server = server_for("correct horse");
        assert_eq!(exchange(&mut server, "correct horse", binding), Ok(()));
        assert!(server.is_authenticated());
    }
    let mut server = ScramServer::new(from_stored.clone());
    assert_eq!(
        exchange(&mut server, "correct horse", ChannelBinding::unsupported()),
        Ok(())
    );

    let client_key = server.client_key().unwrap();
    assert_eq!(
        <[u8; 32]>::from(Sha256::digest(client_key)),
        from_stored.stored_key
    );
}

#[test]
fn non_ascii_password_matches_client_saslprep() {
    let mut server = server_for("pass\u{a0}w\u{00e9}rd");
    assert_eq!(
        exchange(
            &mut server,
            "pass\u{a0}w\u{00e9}rd",
            ChannelBinding::unsupported()
        ),
        Ok(())
    );
}

#[test]
fn wrong_password_is_invalid_proof_and_ends_the_exchange() {
    let mut server = server_for("right");
    let (_, client_final) = client_until_final(&mut server, "wrong", ChannelBinding::unsupported());
    let err = server.client_final(&client_final).unwrap_err();
    assert_eq!(err, ScramError::InvalidProof);
    assert_eq!(err.sqlstate(), "28P01");
    assert!(!server.is_authenticated());
    assert_eq!(server.client_key(), None);
    assert_eq!(
        server.client_final(&client_final),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
fn rfc7677_vector() {
    // RFC 7677 section 3: user "user", password "pencil".
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let mut server = ScramServer::new(ScramVerifier::from_password("pencil", &salt, 4096));
    server.server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned();
    let server_first = server
        .client_first(SCRAM_SHA_256, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        .unwrap();
    assert_eq!(
        server_first,
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let server_final = server
        .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        .unwrap();
    assert_eq!(
        server_final,
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

#[test]
fn server_nonce_extends_client_nonce() {
    let mut server = server_for("pw");
    let first = server
        .client_first(SCRAM_SHA_256, b"y,,n=,r=abc,x=ext")
        .unwrap();
    let first = std::str::from_utf8(&first).unwrap();
    let nonce = first
        .strip_prefix("r=abc")
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert_eq!(STANDARD.decode(nonce).unwrap().len(), SERVER_NONCE_LEN);
    assert_ne!(server_for("pw").server_nonce, server.server_nonce);
    assert_eq!(auth_sasl_mechanisms(), ["SCRAM-SHA-256"]);
}

#[test]
fn malformed_client_first() {
    use ScramError::{ChannelBindingUnsupported, Malformed, UnsupportedMechanism};
    let tls = b"p=tls-server-end-point,,n=,r=abc";
    // One case per line reads as a table.
    #[rustfmt::skip]
    let cases: [(&str, &[u8], ScramError); 13] = [
        ("SCRAM-SHA-256-PLUS", tls, UnsupportedMechanism),
        ("SCRAM-SHA-1", b"n,,n=,r=abc", UnsupportedMechanism),
        (SCRAM_SHA_256, tls, ChannelBindingUnsupported),
        (SCRAM_SHA_256, b"n,a=LEAK,n=,r=abc", Malformed("authorization identity is not supported")),
        (SCRAM_SHA_256, b"x,,n=,r=abc", Malformed("invalid gs2 header")),
        (SCRAM_SHA_256, b"n,LEAK,n=,r=abc", Malformed("invalid gs2 header")),
        (SCRAM_SHA_256, b"", Malformed("invalid gs2 header")),
        (SCRAM_SHA_256, b"n,,m=LEAK,n=,r=abc", Malformed("mandatory extensions are not supported")),
        (SCRAM_SHA_256, b"n,,r=abc", Malformed("expected user name attribute")),
        (SCRAM_SHA_256, b"n,,n=,r=", Malformed("expected nonce attribute")),
        (SCRAM_SHA_256, b"n,,n=,r=a\x7fb", Malformed("nonce has non-printable characters")),
        (SCRAM_SHA_256, b"n,,n=\0,r=abc", Malformed("message contains a NUL byte")),
        (SCRAM_SHA_256, b"n,,n=,r=abc,1=LEAK", Malformed("invalid attribute")),
    ];
    for (mechanism, data, expected) in cases {
        let mut server = server_for("pw");
        let err = server.client_first(mechanism, data).unwrap_err();
        assert_eq!(err, expected, "{}", String::from_utf8_lossy(data));
        assert_eq!(err.sqlstate(), "08P01");
        assert!(!err.to_string().contains("LEAK"));
        let late = server.client_final(b"c=biws,r=abc,p=AAAA");
        assert_eq!(late, Err(ScramError::OutOfOrder));
    }
}

#[test]
fn malformed_client_final() {
    // NONCE and PROOF stand for the right nonce and a well-formed proof.
    #[rustfmt::skip]
    let cases = [
        ("c=eSws,r=NONCE,p=PROOF", "channel binding does not match"),
        ("c=biws,r=NONCELEAK,p=PROOF", "nonce does not match"),
        ("c=biws,r=NONCE", "expected proof attribute"),
        ("c=biws,r=NONCE,p=LEAK", "invalid client proof"),
        ("c=biws,r=NONCE,p=AAAA", "invalid client proof"),
        ("c=biws,r=NONCE,p=PROOF,x=LEAK", "expected proof attribute"),
        ("r=NONCE,c=biws,p=PROOF", "expected channel binding attribute"),
        ("c=biws,p=PROOF", "expected nonce attribute"),
        ("c=biws,r=NONCE,LEAK,p=PROOF", "invalid attribute"),
        ("c=biws,r=NONCE\0,p=PROOF", "message contains a NUL byte"),
        ("no commas", "expected proof attribute"),
    ];
    for (template, reason) in cases {
        let mut server = server_for("pw");
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=x").unwrap();
        let data = template
            .replace("NONCE", &format!("x{}", server.server_nonce))
            .replace("PROOF", &STANDARD.encode([0u8; 32]));
        let err = server.client_final(data.as_bytes()).unwrap_err();
        assert_eq!(err, ScramError::Malformed(reason), "{data}");
        assert!(!err.to_string().contains("LEAK"));
    }

    // The y flag must be echoed as "y,,".
    let mut server = server_for("pw");
    let (_, data) = client_until_final(&mut server, "pw", ChannelBinding::unrequested());
    let data = String::from_utf8(data).unwrap().replace("c=eSws", "c=biws");
    let err = server.client_final(data.as_bytes()).unwrap_err();
    assert_eq!(err, ScramError::Malformed("channel binding does not match"));

    // An unknown extension before the proof is allowed (and signed).
    let mut server = server_for("pw");
    let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
    let first = server
        .client_first(SCRAM_SHA_256, client.message())
        .unwrap();
    client.update(&first).unwrap();
    let with_ext = String::from_utf8(client.message().to_vec())
        .unwrap()
        .replacen(",p=", ",x=ext,p=", 1);
    assert_eq!(
        server.client_final(with_ext.as_bytes()),
        Err(ScramError::InvalidProof)
    );
}

#[test]
fn steps_out_of_order() {
    let mut server = server_for("pw");
    assert_eq!(
        server.client_final(b"c=biws,r=x,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );
    assert_eq!(
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=x"),
        Err(ScramError::OutOfOrder)
    );

    let mut server = server_for("pw");
    server.client_first(SCRAM_SHA_256, b"n,,n=,r=x").unwrap();
    assert_eq!(
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=x"),
        Err(ScramError::OutOfOrder)
    );

    let mut server = server_for("pw");
    assert_eq!(
        exchange(&mut server, "pw", ChannelBinding::unsupported()),
        Ok(())
    );
    assert_eq!(
        server.client_final(b"c=biws,r=x,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );
    assert!(
        server.is_authenticated(),
        "a late message does not undo success"
    );
}

#[test]
fn debug_hides_keys() {
    let mut server = server_for("pw");
    assert_eq!(format!("{server:?}"), r#"ScramServer { state: "initial" }"#);
    exchange(&mut server, "pw", ChannelBinding::unsupported()).unwrap();
    assert_eq!(
        format!("{server:?}"),
        r#"ScramServer { state: "authenticated" }"#
    );
}
