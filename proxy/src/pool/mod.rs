//! Per (database, user) pools of server connections.
//!
//! Check-out takes a permit from a fair (FIFO) semaphore sized to the pool,
//! then pops the most recently used idle connection or opens a new one. The
//! idle stack is behind a std `Mutex` that is never held across `.await`:
//! every critical section is a push or a pop. The check-out is in
//! `checkout.rs`, the counters in `stats.rs`.

mod checkout;
mod follow;
pub mod histogram;
pub mod history;
mod lease;
mod route;
mod settings;
mod stats;
mod wait;

use checkout::CapWait;
pub use lease::Lease;
pub use route::Route;
pub use settings::{PoolSettings, ServerCheck};
pub use stats::{Finished, Stats};
pub use wait::{Waiters, JANITOR_PERIOD};

use crate::server::params::{Extras, ParamSet};
use crate::server::{ServerConn, ServerError};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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

/// See [`Pool::follow_topology`].
/// Called with the new generation and the members (host, port) that lost
/// their role: the checked-out connections to them are retired.
pub type Retirer = Box<dyn Fn(u64, &[(String, u16)]) + Send + Sync>;

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

/// Distinct client startup settings a pool keeps one copy of.
pub const MAX_SHARED_EXTRAS: usize = 64;

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
    /// The startup settings of this pool's clients, one copy of each
    /// distinct set: clients with equal settings (every pgjdbc client of
    /// one URL) share it, and a check-out compares them by pointer.
    extras: Mutex<Vec<Extras>>,
    /// PAUSE: check-outs wait (within query_wait_timeout) until RESUME.
    paused: std::sync::atomic::AtomicBool,
    resumed: tokio::sync::Notify,
    pub(crate) stats: Stats,
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
            extras: Mutex::new(Vec::new()),
            paused: std::sync::atomic::AtomicBool::new(false),
            resumed: tokio::sync::Notify::new(),
            stats: Stats::default(),
        }))
    }

    pub fn key(&self) -> &PoolKey {
        &self.0.key
    }

    /// The pool's copy of a client's startup settings equal to `extras`,
    /// kept from now on if there is none yet (at most
    /// [`MAX_SHARED_EXTRAS`] sets: past that a client keeps its own, which
    /// only costs comparisons by value).
    pub fn shared_extras(&self, extras: Extras) -> Extras {
        let mut known = self.0.extras.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(same) = known.iter().find(|k| **k == extras) {
            return same.clone();
        }
        if known.len() < MAX_SHARED_EXTRAS {
            known.push(extras.clone());
        }
        extras
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

    /// For a pool on a cluster: close connections to a member that lost
    /// the pool's role (see `follow.rs`). Call once, after creating it.
    /// Follows the cluster's topology until the pool is dropped;
    /// `retire(generation, which)` is called when members lost their role,
    /// for the server connections older than `generation` that clients hold
    /// to them (the pool knows no clients; its owner does).
    pub fn follow_topology(&self, retire: Retirer) {
        tokio::spawn(follow::follow(Arc::downgrade(&self.0), retire));
    }

    pub fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.0.settings.load()
    }

    pub fn stats(&self) -> &Stats {
        &self.0.stats
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
                addr: c.peer.clone(),
                local: c.local.clone(),
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
#[derive(Debug, Clone)]
pub struct IdleServer {
    pub addr: crate::net::Endpoint,
    pub local: crate::net::Endpoint,
    pub pid: i32,
    pub created: Instant,
    pub last_used: Instant,
    pub generation: u64,
    /// "" for plain connections (SHOW SERVERS `tls`).
    pub tls: &'static str,
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
