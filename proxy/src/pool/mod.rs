//! Per (database, user) pools of server connections.
//!
//! Check-out takes a permit from a fair (FIFO) semaphore sized to the pool,
//! then pops the most recently used idle connection or opens a new one. The
//! idle stack is behind a std `Mutex` that is never held across `.await`:
//! every critical section is a push or a pop.

mod follow;
pub mod histogram;
mod lease;
mod route;
mod settings;
mod wait;

pub use lease::Lease;
pub use route::Route;
pub use settings::PoolSettings;
pub use wait::{Waiters, JANITOR_PERIOD};

use crate::server::params::ParamSet;
use crate::server::{self, ServerConn, ServerError, ServerTarget};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every ParameterStatus the server sent at login, in order.
pub type Welcome = Arc<WelcomeParams>;

/// What a new client of the pool is told of the server: every
/// ParameterStatus of a first connection's login, and the tracked ones
/// among them, whose text each client's wanted set shares.
#[derive(Debug)]
pub struct WelcomeParams {
    pub reported: Vec<(String, String)>,
    /// Shared by every client whose settings are the server's.
    pub tracked: Arc<ParamSet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub db: String,
    pub user: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no server connection available within query_wait_timeout ({0:?})")]
    WaitTimeout(Duration),
    #[error("pool is closed")]
    Closed,
    #[error("max_db_connections or max_user_connections reached")]
    CapReached,
    #[error("no {} of cluster \"{cluster}\" could be used within failover_wait_timeout ({waited:?}); a failover may be in progress (last: {last})", role_name(*role))]
    NoMember {
        cluster: String,
        role: crate::config::TargetRole,
        waited: Duration,
        last: String,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
}

fn role_name(role: crate::config::TargetRole) -> &'static str {
    match role {
        crate::config::TargetRole::Primary => "primary",
        crate::config::TargetRole::Replica => "replica",
    }
}

impl PoolError {
    pub fn sqlstate(&self) -> &str {
        match self {
            PoolError::WaitTimeout(_) => "08004",
            PoolError::Closed => "57P01",
            PoolError::CapReached => "53300",
            PoolError::NoMember { .. } => "08006",
            PoolError::Server(e) => e.sqlstate(),
        }
    }
}

/// See [`SharedLimits::evict`].
pub type Evictor = Arc<dyn Fn(&PoolKey) + Send + Sync>;

/// Server connection caps shared by several pools (max_db_connections,
/// max_user_connections). Each open connection holds one permit of each.
#[derive(Clone, Default)]
pub struct SharedLimits {
    pub db: Option<Arc<Semaphore>>,
    pub user: Option<Arc<Semaphore>>,
    /// Closes one idle connection of another pool sharing a full cap, so a
    /// waiting pool gets the slot now rather than after server_idle_timeout.
    pub evict: Option<Evictor>,
}

/// Cheap to clone handle.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

pub(crate) struct Inner {
    key: PoolKey,
    settings: ArcSwap<PoolSettings>,
    /// Bumped when the server target changes: older connections are closed.
    generation: AtomicU64,
    /// Boxed: a connection moves in and out of the stack and through a
    /// lease on every transaction; a pointer moves, the struct does not.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
    slots: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    /// Permits currently meant to exist in `slots` (for resizing).
    size: AtomicU32,
    limits: ArcSwap<SharedLimits>,
    /// Server parameters from the first login, sent to clients at theirs.
    welcome: Mutex<Option<Welcome>>,
    /// PAUSE: check-outs wait (within query_wait_timeout) until RESUME.
    paused: std::sync::atomic::AtomicBool,
    resumed: tokio::sync::Notify,
    pub(crate) stats: Stats,
}

/// Counters for the admin console and metrics (later issues).
#[derive(Default)]
pub struct Stats {
    /// Clients waiting for a slot (SHOW POOLS `cl_waiting`, `maxwait`,
    /// SHOW STATS wait time); touched only on the waiting path.
    pub waiters: Waiters,
    pub active: AtomicU32,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Clients logged in to this pool now.
    pub clients: AtomicU32,
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Microseconds: server connections checked out, servers answering.
    pub xact_us: AtomicU64,
    pub query_us: AtomicU64,
    /// Microseconds new connections waited for a member of their role.
    pub failover_wait_us: AtomicU64,
    /// Durations of transactions (check-out to release) and of requests
    /// (a Query or a batch up to Sync, to its ReadyForQuery).
    pub xact_hist: histogram::Histogram,
    pub query_hist: histogram::Histogram,
    pub prepared: crate::prepared::statements::Counters,
}

/// One finished transaction as the client's pump tallied it.
pub struct Finished<'a> {
    pub queries: u32,
    pub received: u64,
    pub sent: u64,
    /// Check-out to release.
    pub held_us: u64,
    /// Time the server spent answering, and its requests by bucket.
    pub query_us: u64,
    pub query_buckets: &'a [u16; histogram::BUCKETS],
}

impl Stats {
    /// One transaction's share of SHOW STATS and /metrics: a few relaxed
    /// adds, once per transaction (benches/benches/stats.rs measures them).
    pub fn count(&self, t: &Finished) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.queries.fetch_add(t.queries.into(), Ordering::Relaxed);
        self.bytes_received.fetch_add(t.received, Ordering::Relaxed);
        self.bytes_sent.fetch_add(t.sent, Ordering::Relaxed);
        self.xact_us.fetch_add(t.held_us, Ordering::Relaxed);
        self.query_us.fetch_add(t.query_us, Ordering::Relaxed);
        self.xact_hist.observe(t.held_us);
        self.query_hist.add(t.query_buckets, t.query_us);
    }
}

impl Pool {
    pub fn new(key: PoolKey, settings: PoolSettings, limits: SharedLimits) -> Self {
        let size = settings.size;
        let reserve = settings.reserve_size;
        Pool(Arc::new(Inner {
            key,
            settings: ArcSwap::from_pointee(settings),
            generation: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(size as usize)),
            reserve: Arc::new(Semaphore::new(reserve as usize)),
            size: AtomicU32::new(size),
            limits: ArcSwap::from_pointee(limits),
            welcome: Mutex::new(None),
            paused: std::sync::atomic::AtomicBool::new(false),
            resumed: tokio::sync::Notify::new(),
            stats: Stats::default(),
        }))
    }

    pub fn key(&self) -> &PoolKey {
        &self.0.key
    }

    /// New transactions wait until [`Pool::resume`]; running ones go on.
    pub fn pause(&self) {
        self.0.paused.store(true, Ordering::Release);
    }

    pub fn resume(&self) {
        self.0.paused.store(false, Ordering::Release);
        self.0.resumed.notify_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::Acquire)
    }

    /// Server connections checked out now (transactions in flight).
    pub fn active(&self) -> u32 {
        self.0.stats.active.load(Ordering::Relaxed)
    }

    /// Closes the idle connections now and the checked-out ones when they
    /// come back (a switchover moved the primary).
    pub fn reconnect(&self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        self.0.idle.lock().unwrap().clear();
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

    /// For a pool on a cluster: close connections to a member that lost
    /// the pool's role (see `follow.rs`). Call once, after creating it.
    pub fn follow_topology(&self) {
        tokio::spawn(follow::follow(Arc::downgrade(&self.0)));
    }

    pub fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.0.settings.load()
    }

    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

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
                if let Some(conn) = self.pop_idle(self.0.settings.load().lifetime, now) {
                    return Ok(Lease::new(conn, self.0.clone(), permit, now));
                }
                return self.checkout_waiting(Some(permit), waiting).await;
            }
        }
        // Not boxed: at 50 clients on a pool of 20 most check-outs wait, and
        // a box per wait cost more (malloc, a copy of the future) than the
        // smaller transaction future saved (callgrind).
        self.checkout_waiting(None, waiting).await
    }

    /// A check-out that waits: for a resume, a free slot (bounded by
    /// `query_wait_timeout`) or a new connection.
    async fn checkout_waiting(
        &self,
        permit: Option<OwnedSemaphorePermit>,
        waiting: impl FnOnce(Instant),
    ) -> Result<Lease, PoolError> {
        // Read once: a reload during the wait applies to the next check-out.
        let (wait, reserve, lifetime) = {
            let s = self.0.settings.load();
            (
                s.query_wait_timeout,
                (s.reserve_size, s.reserve_timeout),
                s.lifetime,
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
        if let Some(conn) = self.pop_idle(lifetime, now) {
            return Ok(Lease::new(conn, self.0.clone(), permit, now));
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

    /// Opens a connection: to the configured host, or to the cluster member
    /// of the pool's role (see [`Route::connect`]).
    async fn open(&self, s: &PoolSettings, wait: CapWait) -> Result<ServerConn, PoolError> {
        match &s.route {
            None => self.open_at(s, &s.target, wait).await,
            Some(route) => {
                let (conn, waited) = route
                    .connect(
                        &s.target,
                        |t| async move { self.open_at(s, &t, wait).await },
                    )
                    .await;
                self.0
                    .stats
                    .failover_wait_us
                    .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
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

    /// The server's ParameterStatus list, learned from a first connection.
    pub async fn welcome(&self) -> Result<Welcome, PoolError> {
        if let Some(w) = self.0.welcome.lock().unwrap().clone() {
            return Ok(w);
        }
        // Boxed: needed once per pool, and inlined the check-out's state
        // made every client's login allocation larger.
        let mut lease = Box::pin(self.checkout()).await?;
        let reported = lease.conn().reported.clone();
        let mut tracked = ParamSet::default();
        for (name, value) in &reported {
            tracked.observe(name, value);
        }
        let w = Arc::new(WelcomeParams {
            reported,
            tracked: Arc::new(tracked),
        });
        *self.0.welcome.lock().unwrap() = Some(w.clone());
        lease.release();
        Ok(w)
    }

    /// Applies reloaded settings. A changed server target closes idle
    /// connections now and checked-out ones when they come back.
    pub fn update(&self, new: PoolSettings, limits: SharedLimits) {
        let old = self.0.settings.load_full();
        if !old.same_target(&new) {
            self.0.generation.fetch_add(1, Ordering::AcqRel);
            self.0.idle.lock().unwrap().clear();
            *self.0.welcome.lock().unwrap() = None;
        }
        resize(&self.0.slots, &self.0.size, new.size);
        if new.reserve_size != old.reserve_size {
            let cur = AtomicU32::new(old.reserve_size);
            resize(&self.0.reserve, &cur, new.reserve_size);
        }
        self.0.limits.store(Arc::new(limits));
        self.0.settings.store(Arc::new(new));
    }

    /// Periodic upkeep: close idle connections past their idle timeout or
    /// lifetime, then open up to `min_pool_size`.
    pub async fn maintain(&self) {
        let s = self.0.settings.load_full();
        let now = Instant::now();
        let generation = self.0.generation.load(Ordering::Acquire);
        {
            let mut idle = self.0.idle.lock().unwrap();
            idle.retain_mut(|c| {
                c.generation == generation
                    && !s.expired(c, now)
                    && (s.idle_timeout.is_zero() || now - c.last_used < s.idle_timeout)
                    && c.is_alive()
            });
        }
        let open = self.open_count();
        if open < s.min_size as usize {
            // Take a slot so min_pool_size never pushes past the pool size.
            if let Ok(permit) = self.0.slots.clone().try_acquire_owned() {
                match self.open(&s, CapWait::Upkeep).await {
                    Ok(c) => {
                        Lease::new(Box::new(c), self.0.clone(), permit, Instant::now()).release()
                    }
                    Err(PoolError::CapReached) => {}
                    Err(e) => {
                        tracing::warn!(db = %self.0.key.db, user = %self.0.key.user, error = %e, "min_pool_size: cannot open server connection")
                    }
                }
            }
        }
    }

    /// Connections made for an older generation must close (SHOW SERVERS
    /// close_needed, WAIT_CLOSE).
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// The idle connections as SHOW SERVERS lists them.
    pub fn idle_servers(&self) -> Vec<IdleServer> {
        let idle = self.0.idle.lock().unwrap();
        idle.iter()
            .map(|c| IdleServer {
                addr: c.peer,
                local: c.local,
                pid: c.pid,
                created: c.created,
                last_used: c.last_used,
                generation: c.generation,
                tls: c.stream.tls_version(),
            })
            .collect()
    }

    /// Idle plus checked-out server connections.
    pub fn open_count(&self) -> usize {
        self.0.idle.lock().unwrap().len() + self.0.stats.active.load(Ordering::Relaxed) as usize
    }

    pub fn idle_count(&self) -> usize {
        self.0.idle.lock().unwrap().len()
    }

    /// Closes the least recently used idle connection; true if there was one.
    pub fn evict_one(&self) -> bool {
        let mut idle = self.0.idle.lock().unwrap();
        if idle.is_empty() {
            return false;
        }
        idle.remove(0);
        true
    }

    /// Drop every idle connection (shutdown).
    pub fn close_idle(&self) {
        self.0.idle.lock().unwrap().clear();
    }

    /// Puts `conn` on the idle stack as if it had been released. Exists only
    /// for the micro-benchmarks in `benches/`, which have no server to log
    /// in to; the proxy must not use it (nothing checks the pool size).
    #[doc(hidden)]
    pub fn seed_idle_for_bench(&self, conn: ServerConn) {
        self.0.push_idle(Box::new(conn));
    }
}

impl Inner {
    pub(crate) fn current_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    pub(crate) fn push_idle(&self, conn: Box<ServerConn>) {
        self.idle.lock().unwrap().push(conn);
    }
}

/// An idle server connection, copied out for the admin console.
#[derive(Debug, Clone, Copy)]
pub struct IdleServer {
    pub addr: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
    pub pid: i32,
    pub created: Instant,
    pub last_used: Instant,
    pub generation: u64,
    /// "" for plain connections (SHOW SERVERS `tls`).
    pub tls: &'static str,
}

/// How [`Pool::open`] may wait for a max_db/max_user_connections slot.
#[derive(Clone, Copy)]
enum CapWait {
    /// A client is waiting: free a slot by evicting an idle connection of a
    /// sibling pool, then wait until the client's query_wait_timeout
    /// deadline (none: unbounded).
    Client(Option<tokio::time::Instant>),
    /// min_pool_size upkeep: never evict nor wait; clients come first.
    Upkeep,
}

/// Runs `wait` until `deadline` (none: unbounded); past it, the client gets
/// [`PoolError::WaitTimeout`] naming the configured `timeout`.
async fn bounded<T>(
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

/// Grows or shrinks a semaphore to `target` permits. Shrinking waits for
/// permits in use to come back, in a background task.
pub(crate) fn resize(sem: &Arc<Semaphore>, size: &AtomicU32, target: u32) {
    let old = size.swap(target, Ordering::AcqRel);
    if target > old {
        sem.add_permits((target - old) as usize);
    } else if target < old {
        let sem = sem.clone();
        let n = old - target;
        tokio::spawn(async move {
            if let Ok(p) = sem.acquire_many_owned(n).await {
                p.forget();
            }
        });
    }
}
