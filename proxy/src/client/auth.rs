//! Client authentication against the auth file: SCRAM-SHA-256, md5,
//! cleartext or trust. Failures look the same whether or not the user
//! exists, and no secret reaches a log line.

use super::ClientError;
use crate::app::App;
use crate::auth::Secret;
use crate::config::AuthType;
use crate::protocol::{backend, frame::split_message, frontend, md5, scram};
use crate::tls::Stream;
use bytes::BytesMut;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a passwordless method's refusal is worded (cert, peer).
type Refusal = fn(String) -> ClientError;

/// Authentication messages are small; refuse anything bigger.
const AUTH_MAX_MESSAGE: u32 = 8192;

pub async fn authenticate(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    db: &str,
) -> Result<(), ClientError> {
    let cfg = app.config.load();
    let auth = app.auth.load();
    let mut secret = auth.get(user).cloned();
    let method = match cfg.auth_type {
        AuthType::Hba => match hba_method(&auth, stream, user, db) {
            Ok(m) => m,
            Err(e) => {
                app.auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        },
        t => t,
    };
    drop(auth);
    // The methods that ask no password: the connection itself decides.
    let passwordless: Option<(bool, Refusal)> = match method {
        AuthType::Cert => Some((certificate_names(stream, user), ClientError::CertFailed)),
        AuthType::Peer => Some((peer_is(stream, user).await, ClientError::PeerFailed)),
        _ => None,
    };
    if let Some((accepted, refusal)) = passwordless {
        if accepted {
            return Ok(());
        }
        app.auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(refusal(user.to_string()));
    }
    if secret.is_none() && method != AuthType::Trust {
        secret = super::auth_query::secret_for(app, user, db).await;
    }
    let ok = match method {
        // Resolved above; an HBA line never names "hba".
        AuthType::Hba | AuthType::Cert | AuthType::Peer => false,
        AuthType::Trust => cfg.auth_file.is_none() || secret.is_some(),
        AuthType::Plain => cleartext(app, stream, buf, user, secret.as_ref()).await?,
        AuthType::Md5 => match &secret {
            Some(s @ Secret::Scram(_)) => scram_exchange(app, stream, buf, user, Some(s)).await?,
            s => md5_exchange(stream, buf, user, s.as_ref()).await?,
        },
        AuthType::ScramSha256 => match &secret {
            Some(Secret::Md5(_)) => {
                tracing::warn!(
                    user,
                    "auth file holds an md5 hash, which cannot answer SCRAM"
                );
                scram_exchange(app, stream, buf, user, None).await?
            }
            s => scram_exchange(app, stream, buf, user, s.as_ref()).await?,
        },
    };
    if ok {
        Ok(())
    } else {
        app.auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(ClientError::AuthFailed(user.to_string()))
    }
}

/// The method `auth_hba_file` gives this connection, or why it is refused
/// (PostgreSQL's messages).
fn hba_method(
    auth: &crate::auth::AuthFile,
    stream: &Stream,
    user: &str,
    db: &str,
) -> Result<AuthType, ClientError> {
    use crate::auth::hba::{Attempt, ClientCert, Method};
    let ip = stream.tcp().map(|t| {
        t.peer_addr()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip())
    });
    let attempt = Attempt {
        db,
        user,
        ip,
        tls: stream.is_tls(),
    };
    let encryption = if stream.is_tls() {
        "SSL encryption"
    } else {
        "no encryption"
    };
    // PostgreSQL's wording: a socket client is "[local]".
    let host = ip.map_or_else(|| "[local]".to_string(), |ip| format!("host \"{ip}\""));
    let about = format!("{host}, user \"{user}\", database \"{db}\", {encryption}");
    let decision = auth.hba.as_ref().and_then(|h| h.decide(attempt));
    if let Some((_, line, required)) = decision {
        // As PostgreSQL: the certificate is checked before the method runs.
        let ok = match required {
            ClientCert::Optional => true,
            ClientCert::VerifyCa => stream.peer_certificate().is_some(),
            ClientCert::VerifyFull => certificate_names(stream, user),
        };
        if !ok {
            tracing::info!(line, %host, user, db, "auth_hba_file: clientcert not satisfied");
            return Err(ClientError::CertFailed(user.to_string()));
        }
    }
    match decision.map(|(m, line, _)| (m, line)) {
        Some((Method::Auth(t), _)) => Ok(t),
        Some((Method::Reject, line)) => {
            tracing::info!(line, %host, user, db, "auth_hba_file rejects the connection");
            Err(ClientError::HbaRefused(format!(
                "pg_hba.conf rejects connection for {about}"
            )))
        }
        Some((Method::Cert, _)) => Ok(AuthType::Cert),
        None => Err(ClientError::HbaRefused(format!(
            "no pg_hba.conf entry for {about}"
        ))),
    }
}

/// auth_type = peer: the OS user at the other end of pgwolf's Unix socket
/// (SO_PEERCRED) is `user`. Logged when not, as PostgreSQL does, with
/// both names (neither is a secret). The uid is looked up off the runtime
/// thread: getpwuid_r may ask nsswitch's network sources (LDAP, sssd).
async fn peer_is(stream: &Stream, user: &str) -> bool {
    let Some(uid) = stream.peer_uid() else {
        tracing::info!(
            user,
            "peer authentication refused: not a Unix socket connection"
        );
        return false;
    };
    let lookup = tokio::task::spawn_blocking(move || {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
    });
    let Ok(looked_up) = lookup.await else {
        return false;
    };
    let name = match looked_up {
        Ok(Some(u)) => u.name,
        Ok(None) => {
            tracing::info!(
                uid,
                user,
                "peer authentication: no OS user has the peer's uid"
            );
            return false;
        }
        Err(e) => {
            tracing::warn!(uid, user, error = %e, "peer authentication: cannot look up the peer's uid");
            return false;
        }
    };
    if name != user {
        tracing::info!(
            os_user = %name, user,
            "peer authentication: the OS user and the requested user differ"
        );
    }
    name == user
}

async fn read_password(stream: &mut Stream, buf: &mut BytesMut) -> Result<BytesMut, ClientError> {
    loop {
        if let Some((tag, body)) = split_message(buf, AUTH_MAX_MESSAGE)? {
            if tag != frontend::PASSWORD {
                return Err(ClientError::Protocol(format!(
                    "expected password response, got message type {:?}",
                    tag as char
                )));
            }
            return Ok(body);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ClientError::Eof);
        }
    }
}

async fn send(stream: &mut Stream, f: impl FnOnce(&mut BytesMut)) -> Result<(), ClientError> {
    let mut out = BytesMut::with_capacity(128);
    f(&mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

/// auth_type = cert: the handshake verified the certificate against
/// client_tls_ca_file; its CommonName must be the user logging in.
fn certificate_names(stream: &Stream, user: &str) -> bool {
    let cn = stream
        .peer_certificate()
        .and_then(crate::tls::peer_common_name);
    match cn {
        Some(cn) if cn == user => true,
        Some(cn) => {
            tracing::info!(user, certificate_cn = %cn, "certificate is for another user");
            false
        }
        None => {
            tracing::info!(user, tls = stream.is_tls(), "no client certificate");
            false
        }
    }
}

fn strip_nul(body: &[u8]) -> &[u8] {
    body.strip_suffix(&[0]).unwrap_or(body)
}

async fn cleartext(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&Secret>,
) -> Result<bool, ClientError> {
    send(stream, backend::auth_cleartext).await?;
    let body = read_password(stream, buf).await?;
    let given = strip_nul(&body);
    Ok(match secret {
        Some(Secret::Plain(p)) => bool::from(p.as_bytes().ct_eq(given)),
        Some(Secret::Md5(h)) => {
            let pw = String::from_utf8_lossy(given);
            let computed = postgres_protocol::password::md5(pw.as_bytes(), user);
            bool::from(computed.as_bytes().ct_eq(h.as_bytes()))
        }
        Some(Secret::Scram(v)) => {
            let pw = String::from_utf8_lossy(given);
            // The key logs pgwolf in to a server holding the same verifier.
            match v.client_key_for(&pw) {
                Some(key) => {
                    app.client_keys.remember(user, key);
                    true
                }
                None => false,
            }
        }
        None => false,
    })
}

async fn md5_exchange(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&Secret>,
) -> Result<bool, ClientError> {
    let salt = md5::md5_salt();
    send(stream, |o| backend::auth_md5(o, salt)).await?;
    let body = read_password(stream, buf).await?;
    Ok(secret.is_some_and(|s| md5::verify_md5(s, user, salt, strip_nul(&body))))
}

async fn scram_exchange(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&Secret>,
) -> Result<bool, ClientError> {
    // An unknown user still gets a full exchange against a stand-in
    // verifier, so the answer does not tell whether the user exists.
    let verifier = match secret {
        Some(s) => app.scram_verifier(user, s),
        None => None,
    };
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(|| app.decoy_verifier(user));
    let mut server = scram::ScramServer::new(verifier);
    send(stream, |o| {
        backend::auth_sasl(o, scram::auth_sasl_mechanisms())
    })
    .await?;

    let body = read_password(stream, buf).await?;
    let (mechanism, data) = scram::parse_initial_response(&body)
        .ok_or_else(|| ClientError::Protocol("malformed SASLInitialResponse".into()))?;
    let first = server
        .client_first(mechanism, data)
        .map_err(|e| ClientError::Protocol(format!("SCRAM: {e}")))?;
    send(stream, |o| backend::auth_sasl_continue(o, &first)).await?;

    let body = read_password(stream, buf).await?;
    match server.client_final(&body) {
        Ok(final_msg) if known => {
            if let (Some(Secret::Scram(_)), Some(key)) = (secret, server.client_key()) {
                // The server may hold the same verifier: log in to it with this.
                app.client_keys.remember(user, key);
            }
            send(stream, |o| backend::auth_sasl_final(o, &final_msg)).await?;
            Ok(true)
        }
        Ok(_) | Err(scram::ScramError::InvalidProof) => Ok(false),
        Err(e) => Err(ClientError::Protocol(format!("SCRAM: {e}"))),
    }
}
