//! Opening a server connection and logging in with whatever the server asks.

use super::scram_keys::{KeyScram, KeyScramError};
use super::{ServerConn, ServerError, ServerLink};
use crate::auth::Secret;
use crate::protocol::{backend, frame::split_message, md5, startup};
use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend as pgfront;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

const LOGIN_MAX_MESSAGE: u32 = 1 << 20;
/// How much of a SCRAM error pgwolf repeats (see [`scram_err`]).
const SCRAM_ERROR_CHARS: usize = 200;

const NO_CLIENT_KEY: &str = "SCRAM-SHA-256 with the auth file's verifier: no client has logged in \
     as this user since pgwolf started, so its ClientKey is not known yet";

/// The server's SCRAM exchange, from a password or from a client's key.
enum Scram {
    Password(ScramSha256),
    Key(KeyScram),
}

const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// Where and as whom to log in.
#[derive(Clone)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub secret: Option<Secret>,
    /// Where a SCRAM verifier `secret` finds the ClientKey a client's login
    /// left (pass-through); None: a verifier cannot log in.
    pub client_keys: Option<std::sync::Arc<super::scram_keys::ClientKeys>>,
    /// Extra startup parameters (application_name, client_encoding, ...).
    pub startup: Vec<(String, String)>,
    /// Keepalive and user timeout for the socket (the `tcp_*` settings).
    pub tcp: crate::sockopt::TcpOptions,
    /// server_tls_sslmode and its certificates, as loaded when the pool's
    /// settings were made.
    pub tls: std::sync::Arc<crate::tls::ServerTls>,
    pub connect_timeout: Duration,
    pub login_timeout: Duration,
    /// Host names to addresses (`dns_max_ttl`), shared by every pool.
    pub dns: crate::net::Dns,
    /// Which entry of a host list comes first (`load_balance_hosts`).
    pub balance: std::sync::Arc<crate::net::hosts::HostCursor>,
}

impl ServerTarget {
    /// `host:port`, or the socket's path for a socket directory (for a
    /// host list, its entries so).
    pub fn addr(&self) -> String {
        crate::net::hosts::split(&self.host)
            .map(|h| crate::net::host_addr(h, self.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Connects and logs in; `limits` are moved into the connection so the
/// connection-count slots free themselves when it is dropped.
pub async fn connect(
    target: &ServerTarget,
    generation: u64,
    limits: Vec<OwnedSemaphorePermit>,
) -> Result<ServerConn, ServerError> {
    let super::open::Opened {
        stream,
        peer,
        local,
        addr,
    } = super::open::open(target).await?;
    let now = Instant::now();
    let mut conn = ServerConn {
        stream,
        rbuf: BytesMut::with_capacity(8192),
        params: Default::default(),
        reported: Vec::new(),
        pid: 0,
        secret: 0,
        peer,
        local,
        created: now,
        last_used: now,
        generation,
        prepared: crate::prepared::statements::ServerStatements::new(0),
        link: None,
        _limits: limits,
    };
    tokio::time::timeout(target.login_timeout, login(&mut conn, target))
        .await
        .map_err(|_| ServerError::Timeout {
            what: "logging in to",
            addr,
        })??;
    conn.link = Some(std::sync::Arc::new(ServerLink {
        addr: conn.peer.clone(),
        pid: conn.pid,
        secret: conn.secret,
        local: conn.local.clone(),
        created: conn.created,
        generation: conn.generation,
        tls: conn.stream.tls_version(),
    }));
    Ok(conn)
}

async fn login(conn: &mut ServerConn, target: &ServerTarget) -> Result<(), ServerError> {
    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> = vec![
        ("user", target.user.as_str()),
        ("database", target.dbname.as_str()),
    ];
    params.extend(target.startup.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    startup::encode_startup(&params, &mut out);
    conn.stream.write_all(&out).await?;
    conn.stream.flush().await?;

    let mut scram: Option<Scram> = None;
    loop {
        let Some((tag, mut body)) = read(conn).await? else {
            continue;
        };
        match tag {
            backend::AUTHENTICATION => {
                if body.len() < 4 {
                    return Err(ServerError::Protocol("short authentication message".into()));
                }
                let code = body.get_i32();
                out.clear();
                match code {
                    AUTH_OK => continue,
                    AUTH_CLEARTEXT => {
                        let pw = plain(target, "password")?;
                        pgfront::password_message(pw.as_bytes(), &mut out)?;
                    }
                    AUTH_MD5 => {
                        let salt: [u8; 4] = body[..]
                            .try_into()
                            .map_err(|_| ServerError::Protocol("bad md5 salt".into()))?;
                        let resp = target
                            .secret
                            .as_ref()
                            .and_then(|s| md5::md5_client_response(s, &target.user, salt))
                            .ok_or_else(|| no_password(target, "md5"))?;
                        pgfront::password_message(resp.as_bytes(), &mut out)?;
                    }
                    AUTH_SASL => {
                        let offered = body[..].split(|b| *b == 0).any(|m| m == b"SCRAM-SHA-256");
                        if !offered {
                            return Err(ServerError::AuthMethod(code));
                        }
                        let s = match &target.secret {
                            Some(Secret::Scram(v)) => {
                                let key = target
                                    .client_keys
                                    .as_ref()
                                    .and_then(|k| k.for_verifier(&target.user, v))
                                    .ok_or_else(|| no_password(target, NO_CLIENT_KEY))?;
                                let s = KeyScram::new(key, v.clone());
                                pgfront::sasl_initial_response(
                                    "SCRAM-SHA-256",
                                    &s.client_first(),
                                    &mut out,
                                )?;
                                Scram::Key(s)
                            }
                            _ => {
                                let pw = plain(target, "SCRAM-SHA-256")?;
                                let s =
                                    ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                                pgfront::sasl_initial_response(
                                    "SCRAM-SHA-256",
                                    s.message(),
                                    &mut out,
                                )?;
                                Scram::Password(s)
                            }
                        };
                        scram = Some(s);
                    }
                    AUTH_SASL_CONTINUE => match scram.as_mut() {
                        Some(Scram::Password(s)) => {
                            s.update(&body).map_err(scram_err)?;
                            pgfront::sasl_response(s.message(), &mut out)?;
                        }
                        Some(Scram::Key(s)) => {
                            let msg = s
                                .client_final(&body)
                                .map_err(|e| key_scram_error(target, e))?;
                            pgfront::sasl_response(&msg, &mut out)?;
                        }
                        None => {
                            return Err(ServerError::Protocol("unexpected SASL continue".into()))
                        }
                    },
                    AUTH_SASL_FINAL => {
                        // Verifies the server's signature: it proves it knows the verifier.
                        match scram.take() {
                            Some(Scram::Password(mut s)) => s.finish(&body).map_err(scram_err)?,
                            Some(Scram::Key(s)) => {
                                s.finish(&body).map_err(|e| key_scram_error(target, e))?
                            }
                            None => {
                                return Err(ServerError::Protocol("unexpected SASL final".into()))
                            }
                        }
                        continue;
                    }
                    other => return Err(ServerError::AuthMethod(other)),
                }
                conn.stream.write_all(&out).await?;
                conn.stream.flush().await?;
            }
            backend::PARAMETER_STATUS => {
                if let Some((k, v)) = backend::parse_parameter_status(&body) {
                    conn.params.observe(k, v);
                    conn.reported.push((k.to_string(), v.to_string()));
                }
            }
            backend::BACKEND_KEY_DATA if body.len() == 8 => {
                conn.pid = body.get_i32();
                conn.secret = body.get_i32();
            }
            backend::ERROR_RESPONSE => return Err(ServerError::from_error_body(&body)),
            backend::READY_FOR_QUERY => return Ok(()),
            // NoticeResponse and anything else at login: nothing to act on.
            _ => {}
        }
    }
}

async fn read(conn: &mut ServerConn) -> Result<Option<(u8, BytesMut)>, ServerError> {
    if let Some(m) = split_message(&mut conn.rbuf, LOGIN_MAX_MESSAGE)
        .map_err(|e| ServerError::Protocol(e.to_string()))?
    {
        return Ok(Some(m));
    }
    if conn.stream.read_buf(&mut conn.rbuf).await? == 0 {
        return Err(ServerError::Closed);
    }
    Ok(None)
}

/// A pass-through login the server will not take: the client is refused as
/// PostgreSQL would refuse it (28P01, the client's view), and the operator
/// is told why in the log, since the client cannot be.
fn key_scram_error(target: &ServerTarget, e: KeyScramError) -> ServerError {
    match e {
        KeyScramError::OtherVerifier => {
            tracing::warn!(
                user = %target.user,
                server = %target.addr(),
                "SCRAM pass-through refused: {e}"
            );
            ServerError::PassThroughRefused {
                user: target.user.clone(),
            }
        }
        e => scram_err(e),
    }
}

/// A SCRAM failure as the client and the log see it. postgres-protocol's
/// errors can quote the server's message (`e=...`), which a hostile server
/// makes as long as it likes: the quote is cut short.
fn scram_err(e: impl std::fmt::Display) -> ServerError {
    let text: String = e.to_string().chars().take(SCRAM_ERROR_CHARS).collect();
    ServerError::Protocol(format!("SCRAM: {text}"))
}

fn plain<'a>(target: &'a ServerTarget, method: &'static str) -> Result<&'a str, ServerError> {
    match &target.secret {
        Some(Secret::Plain(p)) => Ok(p),
        _ => Err(no_password(target, method)),
    }
}

fn no_password(target: &ServerTarget, method: &'static str) -> ServerError {
    ServerError::NoPassword {
        user: target.user.clone(),
        method,
    }
}
