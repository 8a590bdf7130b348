//! One HTTP/1.1 request to Patroni's REST API, bounded in time and size.
//! A connection per request: a poll every few hundred milliseconds does not
//! need keep-alive, and a fresh connection never talks to a member that
//! restarted under it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Patroni's `/cluster` for a few members is a few KiB; this is a bound, not
/// an expectation.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL `{0}`: expected http://host:port")]
    Url(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("response body over {MAX_BODY} bytes or unreadable")]
    Body,
}

pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// `base` is `http://host:port` (a trailing `/` is fine); `path` starts with `/`.
pub async fn request(
    method: &str,
    base: &str,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, send(method, base, path, body))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

async fn send(
    method: &str,
    base: &str,
    path: &str,
    body: Option<String>,
) -> Result<Response, HttpError> {
    let authority = authority(base)?;
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection future drives the socket; it ends with the request.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONNECTION, "close");
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::Body)?
        .to_bytes();
    Ok(Response { status, body })
}

/// `host:port` of an `http://` URL; Patroni's REST API is served over plain
/// HTTP unless configured otherwise, and TLS to it is not supported yet.
fn authority(base: &str) -> Result<&str, HttpError> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Url(base.to_string()))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        return Err(HttpError::Url(base.to_string()));
    }
    Ok(authority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls_name_host_and_port() {
        assert_eq!(
            authority("http://127.0.0.1:8008").unwrap(),
            "127.0.0.1:8008"
        );
        assert_eq!(authority("http://pg-0.db:8008/").unwrap(), "pg-0.db:8008");
        for bad in ["https://h:1", "http://", "http://h", "h:1", "http://h:1/x"] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn get_reads_status_and_body_and_a_silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
            // The second connection gets no answer at all.
            let (_silent, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            head
        });
        let r = request("GET", &base, "/cluster", None, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (503, &b"{}"[..]));
        let err = request("GET", &base, "/cluster", None, Duration::from_millis(200))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, HttpError::Timeout(_)), "{err}");
        server.abort();
    }
}
