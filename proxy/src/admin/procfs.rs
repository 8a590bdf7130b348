//! What Linux says about this process's sockets and memory, read from
//! /proc for SHOW FDS, SOCKETS and MEM: the kernel's tables, not pgwolf's
//! own bookkeeping, so nothing on the hot path counts for them. Elsewhere
//! than Linux every table is empty.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One TCP socket of `/proc/self/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub listening: bool,
    /// Bytes written and not yet acknowledged by the peer.
    pub send_queue: u64,
    /// Bytes received and not yet read by pgwolf.
    pub recv_queue: u64,
    pub inode: u64,
}

/// Every TCP socket of the process's network namespace.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    let mut out = Vec::new();
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(text.lines().skip(1).filter_map(parse_tcp_line));
        }
    }
    out
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`
fn parse_tcp_line(line: &str) -> Option<TcpSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = f.get(4)?.split_once(':')?;
    Some(TcpSocket {
        local: parse_addr(f.get(1)?)?,
        remote: parse_addr(f.get(2)?)?,
        listening: *f.get(3)? == "0A",
        send_queue: u64::from_str_radix(tx, 16).ok()?,
        recv_queue: u64::from_str_radix(rx, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// `0100007F:1538`: the address as the kernel's words in native byte
/// order, then the port.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Unix sockets by inode: the path bound, if any (`/proc/self/net/unix`).
pub fn unix_sockets() -> HashMap<u64, String> {
    let Ok(text) = std::fs::read_to_string("/proc/self/net/unix") else {
        return HashMap::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let inode = f.get(6)?.parse().ok()?;
            Some((inode, f.get(7).map_or_else(String::new, |p| p.to_string())))
        })
        .collect()
}

/// The process's open descriptors and what each points at
/// (`socket:[123]`, `anon_inode:[eventpoll]`, a path).
pub fn fds() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    out.sort();
    out
}

/// The inode in a `socket:[123]` link.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `/proc/self/status` memory lines, in bytes: (VmRSS, VmSize, VmHWM).
pub fn vm_bytes() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let n: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(n * 1024)
    };
    Some((kib("VmRSS:")?, kib("VmSize:")?, kib("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_lines_parse() {
        let v4 = "   0: 0100007F:1538 0100007F:D431 01 00000010:00000020 00:00000000 00000000  0 0 4242 1 0 20 4 30 10 -1";
        let s = parse_tcp_line(v4).unwrap();
        assert_eq!(s.local, "127.0.0.1:5432".parse().unwrap());
        assert_eq!(s.remote, "127.0.0.1:54321".parse().unwrap());
        assert_eq!((s.send_queue, s.recv_queue, s.inode), (16, 32, 4242));
        assert!(!s.listening);
        let v6 = "   1: 00000000000000000000000001000000:1920 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 77 1";
        let s = parse_tcp_line(v6).unwrap();
        assert_eq!(s.local, "[::1]:6432".parse().unwrap());
        assert!(s.listening);
        assert_eq!(socket_inode("socket:[99]"), Some(99));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn this_process_is_visible() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let socks = tcp_sockets();
        let mine = socks
            .iter()
            .find(|s| s.local.port() == port)
            .expect("our listener in /proc/self/net/tcp");
        assert!(mine.listening);
        let fd_targets: Vec<u64> = fds().iter().filter_map(|(_, t)| socket_inode(t)).collect();
        assert!(fd_targets.contains(&mine.inode));
        let (rss, size, hwm) = vm_bytes().unwrap();
        assert!(rss > 0 && size >= rss && hwm >= rss);
    }
}
