//! How a client gets a server connection: a slot of the pool (first come,
//! first served, bounded by `query_wait_timeout`), then the most recently
//! used idle connection or a new one within the shared caps.

use super::{settings, wait, Lease, Pool, PoolError, PoolSettings, ServerCheck};
use crate::server::{self, ServerConn, ServerTarget};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

impl Pool {
    /// A server connection for one transaction (or session), waiting at most
    /// `query_wait_timeout` for a free slot, both the pool's own and, when a
    /// new connection is needed, the shared max_db/max_user_connections caps.
    pub async fn checkout(&self) -> Result<Lease, PoolError> {
        self.checkout_with(|_| {}).await
    }

    /// [`Pool::checkout`] that calls `waiting`, at most once, with the
    /// clock reading a wait starts at (for a resume, a slot or a new
    /// connection), so that the caller need not read the clock again.
    pub async fn checkout_with(&self, waiting: impl FnOnce(Instant)) -> Result<Lease, PoolError> {
        // The usual case, a free slot and an idle connection, reads the
        // clock once (the lease's start), touches no waiting counter and
        // does not clone the settings' Arc. The
        // semaphore hands released permits to waiters first, so taking a
        // free one here never jumps the queue.
        if !self.0.paused.load(Ordering::Acquire) {
            if let Ok(permit) = self.0.slots.clone().try_acquire_owned() {
                let now = Instant::now();
                let due = {
                    let s = self.0.settings.load();
                    match self.pop_idle(s.lifetime, now) {
                        Some(conn) if !s.check.as_ref().is_some_and(|c| c.due(&conn, now)) => {
                            return Ok(Lease::new(conn, self.0.clone(), permit, now));
                        }
                        due => due,
                    }
                };
                return self.checkout_waiting(Some((permit, due)), waiting).await;
            }
        }
        // Not boxed: at 50 clients on a pool of 20 most check-outs wait, and
        // a box per wait cost more (malloc, a copy of the future) than the
        // smaller transaction future saved (callgrind).
        self.checkout_waiting(None, waiting).await
    }

    /// A check-out that waits: for a resume, a free slot (bounded by
    /// `query_wait_timeout`), a `server_check_query` or a new connection.
    /// `held`: the slot the fast path took, and the idle connection it
    /// popped that must be checked first, if any.
    async fn checkout_waiting(
        &self,
        held: Option<(OwnedSemaphorePermit, Option<Box<ServerConn>>)>,
        waiting: impl FnOnce(Instant),
    ) -> Result<Lease, PoolError> {
        let (permit, popped) = match held {
            Some((p, c)) => (Some(p), c),
            None => (None, None),
        };
        // Read once: a reload during the wait applies to the next check-out.
        let (wait, reserve, lifetime, check) = {
            let s = self.0.settings.load();
            (
                s.query_wait_timeout,
                (s.reserve_size, s.reserve_timeout),
                s.lifetime,
                s.check.clone(),
            )
        };
        let mut waiting = Some(waiting);
        let mut tell = |now| {
            if let Some(f) = waiting.take() {
                f(now)
            }
        };
        if permit.is_none() && self.0.paused.load(Ordering::Acquire) {
            let since = Instant::now();
            tell(since);
            // Boxed, as is the reserve's wait: rare, and inlined their
            // state would be part of every transaction's future, which
            // then outgrew malloc's per-thread cache (1,464 bytes).
            Box::pin(self.wait_resumed(since, wait)).await?;
        }
        let free = match permit {
            Some(p) => Ok(p),
            None => self.0.slots.clone().try_acquire_owned(),
        };
        // One clock reading starts the wait, one ends it and starts the
        // lease (the wait's deadline is the janitor's, see `wait.rs`).
        let (permit, now, deadline) = match free {
            Ok(p) => (p, Instant::now(), None),
            Err(_) => {
                let since = Instant::now();
                tell(since);
                let waiters = &self.0.stats.waiters;
                let acquire = self.acquire_slot(reserve);
                let (p, now) = wait::BoundedWait::new(waiters, since, wait, acquire).await?;
                (p, now, (!wait.is_zero()).then(|| since + wait))
            }
        };
        let mut now = now;
        if let Some(mut conn) = popped.or_else(|| self.pop_idle(lifetime, now)) {
            let Some(check) = check.as_ref().filter(|c| c.due(&conn, now)) else {
                return Ok(Lease::new(conn, self.0.clone(), permit, now));
            };
            tell(now);
            // Boxed: rare (a connection idle past server_check_delay).
            if Box::pin(self.check(&mut conn, check)).await.is_ok() {
                return Ok(Lease::new(conn, self.0.clone(), permit, Instant::now()));
            }
            // Failed, and closed. The others idle as long may have gone
            // the same way, each taking the check's timeout again: this
            // client gets a new connection; later ones check the others.
            now = Instant::now();
        }
        tell(now);
        let settings = self.0.settings.load_full();
        let deadline = deadline
            .or_else(|| (!wait.is_zero()).then(|| now + wait))
            .map(tokio::time::Instant::from_std);
        // Boxed: connecting is rare and its state is large.
        let conn = Box::pin(self.open(&settings, CapWait::Client(deadline))).await?;
        Ok(Lease::new(
            Box::new(conn),
            self.0.clone(),
            permit,
            Instant::now(),
        ))
    }

    /// A slot of the pool, or after `reserve_timeout` one of its reserve
    /// (`reserve`: reserve_pool_size and reserve_pool_timeout).
    fn acquire_slot(
        &self,
        (reserve_size, reserve_timeout): (u32, Duration),
    ) -> impl std::future::Future<Output = Result<OwnedSemaphorePermit, PoolError>> + '_ {
        use futures_util::future::{Either, TryFutureExt};
        if reserve_size == 0 {
            let main = self.0.slots.clone().acquire_owned();
            Either::Left(main.map_err(|_| PoolError::Closed))
        } else {
            Either::Right(Box::pin(self.acquire_with_reserve(reserve_timeout)))
        }
    }

    async fn acquire_with_reserve(
        &self,
        reserve_timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, PoolError> {
        let main = self.0.slots.clone().acquire_owned();
        tokio::pin!(main);
        tokio::select! {
            p = &mut main => return p.map_err(|_| PoolError::Closed),
            _ = tokio::time::sleep(reserve_timeout) => {}
        }
        // Waited long enough: a reserve connection may serve this client.
        let reserve = self.0.reserve.clone().acquire_owned();
        tokio::select! {
            p = main => p.map_err(|_| PoolError::Closed),
            p = reserve => p.map_err(|_| PoolError::Closed),
        }
    }

    /// Runs `server_check_query` on `conn`; on failure (an error, a closed
    /// socket, no answer within `server_check_timeout`) the connection is
    /// dropped, which closes it.
    async fn check(&self, conn: &mut ServerConn, check: &ServerCheck) -> Result<(), ()> {
        let failed =
            match tokio::time::timeout(check.timeout, conn.run_own_query(&check.query)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "no answer within server_check_timeout ({:?})",
                    check.timeout
                ),
            };
        self.0.stats.check_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            db = %self.0.key.db, user = %self.0.key.user, server = %conn.peer,
            "server connection failed server_check_query, closed: {failed}"
        );
        Err(())
    }

    fn pop_idle(&self, lifetime: Duration, now: Instant) -> Option<Box<ServerConn>> {
        let generation = self.0.generation.load(Ordering::Acquire);
        loop {
            let mut conn = self.0.idle.lock().unwrap().pop()?;
            if conn.generation == generation
                && !settings::outlived(lifetime, &conn, now)
                && conn.is_alive()
            {
                return Some(conn);
            }
            // Dropping closes the socket; the server sees EOF and cleans up.
        }
    }

    /// PAUSE is rare: this wait keeps a tokio timer of its own.
    async fn wait_resumed(&self, since: Instant, wait: Duration) -> Result<(), PoolError> {
        let deadline = (!wait.is_zero()).then(|| tokio::time::Instant::from_std(since + wait));
        let _w = self.0.stats.waiters.start(since, None, None);
        bounded(deadline, wait, async {
            loop {
                let resumed = self.0.resumed.notified();
                tokio::pin!(resumed);
                // Registered before the check, so a RESUME in between is seen.
                resumed.as_mut().enable();
                if !self.0.paused.load(Ordering::Acquire) {
                    return Ok(());
                }
                resumed.await;
            }
        })
        .await
    }

    /// Opens a connection: to the configured host, or to the cluster member
    /// of the pool's role (see [`Route::connect`]).
    pub(super) async fn open(
        &self,
        s: &PoolSettings,
        wait: CapWait,
    ) -> Result<ServerConn, PoolError> {
        match &s.route {
            None => self.open_at(s, &s.target, wait).await,
            Some(route) => {
                let (conn, waited) = route
                    .connect(
                        &s.target,
                        |t| async move { self.open_at(s, &t, wait).await },
                    )
                    .await;
                let us = waited.as_micros() as u64;
                self.0
                    .stats
                    .failover_wait_us
                    .fetch_add(us, Ordering::Relaxed);
                if us > 0 {
                    self.0.stats.failover_hist.observe(us);
                }
                conn
            }
        }
    }

    /// Opens a connection to `target` once the shared caps allow it.
    async fn open_at(
        &self,
        s: &PoolSettings,
        target: &ServerTarget,
        wait: CapWait,
    ) -> Result<ServerConn, PoolError> {
        let limits = self.0.limits.load_full();
        let mut held = Vec::with_capacity(2);
        for sem in [&limits.db, &limits.user].into_iter().flatten() {
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let CapWait::Client(deadline) = wait else {
                        return Err(PoolError::CapReached);
                    };
                    if let Some(evict) = &limits.evict {
                        evict(&self.0.key);
                    }
                    let acquire = async {
                        sem.clone()
                            .acquire_owned()
                            .await
                            .map_err(|_| PoolError::Closed)
                    };
                    bounded(deadline, s.query_wait_timeout, acquire).await?
                }
            };
            held.push(permit);
        }
        let generation = self.0.generation.load(Ordering::Acquire);
        match server::connect(target, generation, held).await {
            Ok(c) => {
                self.0.stats.connects.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(db = %self.0.key.db, user = %self.0.key.user, server = %c.peer, "server connection opened");
                Ok(c)
            }
            Err(e) => {
                self.0
                    .stats
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }
}

/// How [`Pool::open`] may wait for a max_db/max_user_connections slot.
#[derive(Clone, Copy)]
pub(super) enum CapWait {
    /// A client is waiting: free a slot by evicting an idle connection of a
    /// sibling pool, then wait until the client's query_wait_timeout
    /// deadline (none: unbounded).
    Client(Option<tokio::time::Instant>),
    /// min_pool_size upkeep: never evict nor wait; clients come first.
    Upkeep,
}

/// Runs `wait` until `deadline` (none: unbounded); past it, the client gets
/// [`PoolError::WaitTimeout`] naming the configured `timeout`.
pub(super) async fn bounded<T>(
    deadline: Option<tokio::time::Instant>,
    timeout: Duration,
    wait: impl std::future::Future<Output = Result<T, PoolError>>,
) -> Result<T, PoolError> {
    match deadline {
        None => wait.await,
        Some(d) => tokio::time::timeout_at(d, wait)
            .await
            .map_err(|_| PoolError::WaitTimeout(timeout))?,
    }
}
