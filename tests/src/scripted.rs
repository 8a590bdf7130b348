//! [`ScriptedServer`]: a PostgreSQL server that is not one, for the bytes a
//! real server never sends (a hostile or broken one: PgBouncer's
//! CVE-2026-6665 and -6666, an injected answer to SSLRequest). It listens
//! on a free loopback port and runs the test's script for each connection
//! pgwolf opens, bounded in time; it stops when dropped.

use crate::wire::message;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const SSL_REQUEST: u32 = 80_877_103;

pub struct ScriptedServer {
    port: u16,
    task: JoinHandle<()>,
}

impl ScriptedServer {
    /// Runs `script` for every connection, for at most 30 s each.
    pub async fn start<F, Fut>(script: F) -> ScriptedServer
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let script = std::sync::Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let run = script(Peer { stream });
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), run).await;
                });
            }
        });
        ScriptedServer { port, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// pgwolf's end of one connection, as the script sees it.
pub struct Peer {
    pub stream: TcpStream,
}

impl Peer {
    /// Reads pgwolf's first packet; an SSLRequest gets `ssl_answer` as it
    /// is (b"N" to go on in plaintext), then the StartupMessage is read.
    /// Returns the StartupMessage's body, or None if pgwolf left.
    pub async fn startup(&mut self, ssl_answer: &[u8]) -> Option<Vec<u8>> {
        loop {
            let len = self.stream.read_u32().await.ok()? as usize;
            let mut body = vec![0; len.checked_sub(4)?];
            self.stream.read_exact(&mut body).await.ok()?;
            if body.len() == 4 && body[..] == SSL_REQUEST.to_be_bytes() {
                self.send(ssl_answer).await;
                if ssl_answer != b"N" {
                    return None;
                }
                continue;
            }
            return Some(body);
        }
    }

    /// Sends `bytes` as they are; a peer that left is not an error.
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next frontend message (tag, body); None when pgwolf left.
    pub async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        crate::wire::try_read_message(&mut self.stream).await
    }

    /// Answers every simple Query with `answer(sql)` until pgwolf leaves.
    pub async fn serve_queries(&mut self, answer: impl Fn(&str) -> Vec<u8>) {
        while let Some((tag, body)) = self.read().await {
            match tag {
                b'Q' => {
                    let sql = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body));
                    let reply = answer(&sql);
                    self.send(&reply).await;
                }
                b'X' => return,
                _ => {}
            }
        }
    }
}

/// An Authentication message: its code and what follows it.
pub fn authentication(code: i32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    message(b'R', &body)
}

/// AuthenticationOk, a cancel key and ReadyForQuery: a finished login.
pub fn logged_in() -> Vec<u8> {
    let mut out = authentication(0, &[]);
    out.extend(message(b'S', b"server_version\x0015.0\0"));
    out.extend(message(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
    out.extend(ready_for_query());
    out
}

pub fn ready_for_query() -> Vec<u8> {
    message(b'Z', b"I")
}

/// CommandComplete with `tag`, then ReadyForQuery.
pub fn command_complete(tag: &str) -> Vec<u8> {
    let mut out = message(b'C', format!("{tag}\0").as_bytes());
    out.extend(ready_for_query());
    out
}

/// An ErrorResponse with exactly these fields (no SQLSTATE unless given).
pub fn error_response(fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in fields {
        body.push(*kind);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    message(b'E', &body)
}
