//! SHOW commands about what the process holds rather than its pools:
//! DNS_HOSTS and DNS_ZONES (the DNS cache), FDS, SOCKETS and MEM (from
//! /proc, see `procfs.rs`). Same column names as
//! PgBouncer's, pgwolf's own content where PgBouncer's makes no sense
//! here (docs/admin.md says which).

use super::procfs;
use super::rows::{self, INT4, NUMERIC, TEXT};
use crate::app::App;
use crate::net::dns::DnsTtl;
use crate::net::Endpoint;
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;

/// SHOW DNS_HOSTS: every cached server host name, the seconds until it
/// is looked up again, and its addresses (a failed lookup: its error).
pub fn dns_hosts(app: &App, out: &mut BytesMut) {
    rows::typed_description(out, &[("hostname", TEXT), ("ttl", INT4), ("addrs", TEXT)]);
    let ttl = DnsTtl::from_config(&app.config.load());
    for host in app.dns.snapshot(ttl) {
        let addrs = match &host.answer {
            Ok(ips) => ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Err(e) => format!("({e})"),
        };
        let ttl = host.ttl.as_secs_f64().ceil() as u64;
        rows::data_row(out, &[Some(host.host), Some(ttl.to_string()), Some(addrs)]);
    }
    rows::command_complete(out, "SHOW");
}

/// SHOW DNS_ZONES: PgBouncer's SOA checks per zone (`dns_zone_check_period`,
/// with c-ares). pgwolf asks the system resolver, which has no zones to
/// check, so there are never rows: a changed name is seen when its
/// `dns_max_ttl` runs out, or at once after a failed connect.
pub fn dns_zones(out: &mut BytesMut) {
    rows::typed_description(
        out,
        &[("zonename", TEXT), ("serial", TEXT), ("count", INT4)],
    );
    rows::command_complete(out, "SHOW");
}

/// SHOW SOCKETS: SHOW CLIENTS' and SHOW SERVERS' rows with the kernel's
/// queues of each TCP socket.
pub fn sockets(app: &App, out: &mut BytesMut) {
    // By address pair, so thousands of connections stay one pass each.
    let queues: HashMap<(SocketAddr, SocketAddr), (u64, u64)> = procfs::tcp_sockets()
        .into_iter()
        .map(|s| ((s.local, s.remote), (s.recv_queue, s.send_queue)))
        .collect();
    super::conns::sockets(app, out, |local, peer| {
        let (Endpoint::Tcp(local), Endpoint::Tcp(peer)) = (local, peer) else {
            return None;
        };
        queues.get(&(*local, *peer)).copied()
    });
}

/// SHOW FDS: every open descriptor and what it is. PgBouncer's lists the
/// state an online restart hands over (passwords included); pgwolf has no
/// takeover and never shows a secret, so these are its own columns.
pub fn fds(app: &App, out: &mut BytesMut) {
    rows::typed_description(
        out,
        &[
            ("fd", INT4),
            ("task", TEXT),
            ("user", TEXT),
            ("database", TEXT),
            ("addr", TEXT),
            ("port", INT4),
            ("local_addr", TEXT),
            ("local_port", INT4),
            ("link", TEXT),
        ],
    );
    // Indexed once: a scan per descriptor would be quadratic in the
    // connections.
    let tcp: HashMap<u64, procfs::TcpSocket> = procfs::tcp_sockets()
        .into_iter()
        .map(|s| (s.inode, s))
        .collect();
    let unix = procfs::unix_sockets();
    let owners: HashMap<(SocketAddr, SocketAddr), (char, String, String)> =
        super::conns::owners(app)
            .into_iter()
            .filter_map(|(local, remote, kind, user, db)| match (local, remote) {
                (Endpoint::Tcp(l), Endpoint::Tcp(r)) => Some(((l, r), (kind, user, db))),
                _ => None,
            })
            .collect();
    let owner = |local: SocketAddr, remote: SocketAddr| owners.get(&(local, remote));
    let text = |v: &dyn ToString| Some(v.to_string());
    for (fd, target) in procfs::fds() {
        let inode = procfs::socket_inode(&target);
        let mut row = vec![
            text(&fd),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some(target),
        ];
        if let Some(s) = inode.and_then(|i| tcp.get(&i)) {
            let task = match owner(s.local, s.remote) {
                _ if s.listening => "pooler",
                Some(('C', user, db)) => {
                    (row[2], row[3]) = (Some(user.clone()), Some(db.clone()));
                    "client"
                }
                Some((_, user, db)) => {
                    (row[2], row[3]) = (Some(user.clone()), Some(db.clone()));
                    "server"
                }
                // The topology's watches, /metrics, connections being opened.
                None => "socket",
            };
            row[1] = text(&task);
            row[4] = text(&s.remote.ip());
            row[5] = text(&s.remote.port());
            row[6] = text(&s.local.ip());
            row[7] = text(&s.local.port());
        } else if let Some(path) = inode.and_then(|i| unix.get(&i)) {
            row[1] = text(&"unix");
            row[4] = text(&"unix");
            row[8] = Some(path.clone())
                .filter(|p| !p.is_empty())
                .or(row[8].take());
        } else {
            row[1] = text(&"other");
        }
        rows::data_row(out, &row);
    }
    rows::command_complete(out, "SHOW");
}

/// SHOW MEM: PgBouncer's lists its slab caches; pgwolf allocates per
/// object and has none, so the rows are the process's memory as the
/// kernel counts it, in bytes (`size` 1, so `used` × `size` is bytes as
/// in PgBouncer's): resident now, resident at most, address space.
pub fn mem(out: &mut BytesMut) {
    rows::typed_description(
        out,
        &[
            ("name", TEXT),
            ("size", INT4),
            ("used", NUMERIC),
            ("free", NUMERIC),
            ("memtotal", NUMERIC),
        ],
    );
    if let Some((rss, size, peak)) = procfs::vm_bytes() {
        for (name, bytes) in [("rss", rss), ("rss_peak", peak), ("vm_size", size)] {
            let b = Some(bytes.to_string());
            rows::data_row(
                out,
                &[
                    Some(name.into()),
                    Some("1".into()),
                    b.clone(),
                    Some("0".into()),
                    b,
                ],
            );
        }
    }
    rows::command_complete(out, "SHOW");
}
