//! Free loopback ports for the servers a test starts.
//!
//! A port is picked at random below the kernel's ephemeral range (so outgoing
//! client connections, thousands in some tests, cannot take it first), checked
//! by binding it on 127.0.0.1, and never handed out twice in one process.
//! Other test processes pick at random too; a rare collision shows up as a
//! bind error, which `PgServer` and `Pgwolf` retry with a new port.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Ports below the default ephemeral range (32768–60999).
const LOW: u16 = 12_000;
const HIGH: u16 = 32_000;

/// Ports this process has already handed out. A process-wide set is the
/// point: two tests in one binary must not be given the same port.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

fn random_candidate(seed: &RandomState, attempt: u64) -> u16 {
    let mut h = seed.build_hasher();
    h.write_u64(attempt);
    h.write_u32(std::process::id());
    LOW + (h.finish() % u64::from(HIGH - LOW)) as u16
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A loopback port nobody listens on right now, unique within this process.
pub fn free_port() -> u16 {
    let seed = RandomState::new();
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0..1_000 {
        let port = random_candidate(&seed, attempt);
        if !taken.contains(&port) && bindable(port) {
            taken.insert(port);
            return port;
        }
    }
    // Fall back to whatever the kernel hands out.
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if taken.insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|p| bindable(*p)));
    }
}
