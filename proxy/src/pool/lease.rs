//! A checked-out server connection. Dropping a lease closes the connection
//! unless it was marked clean with [`Lease::release`]: a connection in an
//! unknown state must never reach another client.

use super::Inner;
use crate::server::ServerConn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

pub struct Lease {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Inner>,
    _slot: OwnedSemaphorePermit,
    since: Instant,
}

impl Lease {
    /// `now`: the check-out's clock reading.
    pub(super) fn new(
        conn: Box<ServerConn>,
        pool: Arc<Inner>,
        slot: OwnedSemaphorePermit,
        now: Instant,
    ) -> Self {
        pool.stats.active.fetch_add(1, Ordering::Relaxed);
        Lease {
            conn: Some(conn),
            pool,
            _slot: slot,
            since: now,
        }
    }

    /// When it was checked out.
    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn conn(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("lease holds a connection until dropped")
    }

    /// Gives the connection back to the pool: the caller vouches that it is
    /// idle (ReadyForQuery 'I', nothing unread). Expired connections and
    /// those of an older generation are closed instead.
    pub fn release(self) {
        self.release_at(Instant::now());
    }

    /// [`Lease::release`] with the caller's clock reading of `now`.
    pub fn release_at(mut self, now: Instant) {
        if let Some(mut conn) = self.conn.take() {
            let s = self.pool.settings();
            if conn.generation == self.pool.current_generation()
                && !s.expired(&conn, now)
                && conn.rbuf.is_empty()
            {
                conn.last_used = now;
                self.pool.push_idle(conn);
            }
        }
    }

    /// Closes the connection (dirty, broken, or no longer wanted).
    pub fn discard(mut self) {
        self.conn.take();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}
