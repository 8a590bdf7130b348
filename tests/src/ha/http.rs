//! A small blocking HTTP/1.1 client for the Patroni and etcd REST APIs (on
//! 127.0.0.1, or a lab host's address), so the harness needs no curl. One request per connection
//! (`Connection: close`); the response is read to EOF under one deadline, so
//! a hung server costs at most `limit`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A response: status code and body (chunked encoding already undone).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

pub fn get(port: u16, path: &str, limit: Duration) -> io::Result<Response> {
    request(port, "GET", path, None, limit)
}

/// GET from another address than 127.0.0.1 (a lab host).
pub fn get_at(addr: SocketAddr, path: &str, limit: Duration) -> io::Result<Response> {
    request_to(addr, "GET", path, None, limit)
}

pub fn post_json_at(
    addr: SocketAddr,
    path: &str,
    body: &str,
    limit: Duration,
) -> io::Result<Response> {
    request_to(addr, "POST", path, Some(body), limit)
}

/// `method path` on 127.0.0.1:`port`; connect, send and receive all within `limit`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> io::Result<Response> {
    request_to(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        method,
        path,
        body,
        limit,
    )
}

/// `method path` on `addr`; connect, send and receive all within `limit`.
pub fn request_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    limit: Duration,
) -> io::Result<Response> {
    let deadline = Instant::now() + limit;
    let mut stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_write_timeout(Some(limit))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Accept: application/json\r\nUser-Agent: pgwolf-tests\r\n"
    );
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    stream.write_all(head.as_bytes())?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(method, path, addr, limit));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A read timeout surfaces as WouldBlock on Linux.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(timed_out(method, path, addr, limit))
            }
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw)
}

fn timed_out(method: &str, path: &str, addr: SocketAddr, limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{method} {addr}{path}: no complete response within {limit:?}"),
    )
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Parse a whole HTTP/1.x response (status line, headers, body).
pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("HTTP response without end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| invalid(&format!("bad HTTP status line {status_line:?}")))?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            if let Ok(len) = value.parse::<usize>() {
                body = &body[..len.min(body.len())];
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(&format!("bad chunk size {size_hex:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(invalid("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_response() {
        let raw = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                    Content-Length: 17\r\n\r\n{\"state\": \"x\"}  ";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "{\"state\": \"x\"}  ");
        assert_eq!(r.json().unwrap()["state"], "x");
    }

    #[test]
    fn parses_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    7\r\n{\"healt\r\n8;x=1\r\nh\":\"true\r\n2\r\n\"}\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json().unwrap()["health"], "true");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"hello\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
