//! Host lists (`host = "db1,db2"`, as PgBouncer 1.24 and libpq take them)
//! and which entry a new server connection tries first:
//! `load_balance_hosts = "round-robin"` starts each at the next entry,
//! `"disable"` stays on the entry that worked last until it fails.

use crate::config::LoadBalanceHosts;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The entries of a host list, trimmed; one entry for a plain host.
pub fn split(host: &str) -> impl Iterator<Item = &str> {
    host.split(',').map(str::trim)
}

/// Per pool: where the next connection starts in its host list.
#[derive(Debug, Default)]
pub struct HostCursor {
    next: AtomicUsize,
    mode: LoadBalanceHosts,
}

impl HostCursor {
    pub fn new(mode: LoadBalanceHosts) -> Self {
        HostCursor {
            next: AtomicUsize::new(0),
            mode,
        }
    }

    /// The entry of `n` to try first.
    pub fn first(&self, n: usize) -> usize {
        let at = match self.mode {
            LoadBalanceHosts::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed),
            LoadBalanceHosts::Disable => self.next.load(Ordering::Relaxed),
        };
        at % n.max(1)
    }

    /// Entry `i` was reached: with `disable`, it stays first.
    pub fn reached(&self, i: usize) {
        if self.mode == LoadBalanceHosts::Disable {
            self.next.store(i, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_moves_on_disable_stays() {
        assert_eq!(split(" a, b ,c").collect::<Vec<_>>(), ["a", "b", "c"]);
        let rr = HostCursor::new(LoadBalanceHosts::RoundRobin);
        let firsts: Vec<usize> = (0..4).map(|_| rr.first(3)).collect();
        assert_eq!(firsts, [0, 1, 2, 0]);
        let stay = HostCursor::new(LoadBalanceHosts::Disable);
        assert_eq!((stay.first(3), stay.first(3)), (0, 0));
        // The first failed, the second answered: it is first from now on.
        stay.reached(1);
        assert_eq!((stay.first(3), stay.first(3)), (1, 1));
    }
}
