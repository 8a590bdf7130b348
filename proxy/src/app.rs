//! Process-wide state behind one `Arc<App>`: the config snapshot, the auth
//! file, the pools, cancel keys, and the shutdown signal. No `static`s.

use crate::auth::{AuthFile, ScramVerifier, Secret};
use crate::config::{ClusterConfig, Config, DatabaseConfig, PoolMode, Provider};
use crate::pool::{Pool, PoolKey, PoolSettings, Route, ServerCheck, SharedLimits};
use crate::registry::ClientRegistry;
use crate::server::ServerTarget;
use crate::topology::Cluster;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub struct App {
    /// For callbacks that must not keep the App alive.
    me: std::sync::Weak<App>,
    pub config: ArcSwap<Config>,
    pub auth: ArcSwap<AuthFile>,
    /// Certificates and keys as last loaded (start, SIGHUP, RELOAD).
    pub tls: ArcSwap<crate::tls::TlsSetup>,
    /// ClientKeys from SCRAM logins against auth-file verifiers, for
    /// logging in to servers as those users (pass-through).
    pub client_keys: Arc<crate::server::scram_keys::ClientKeys>,
    /// Server host names' addresses (`dns_max_ttl`), for every pool.
    pub dns: Arc<crate::net::dns::DnsCache>,
    /// Secrets found by auth_query, with until when they may be reused
    /// (see `client/auth_query.rs`).
    pub looked_up: DashMap<String, (Option<Secret>, std::time::Instant)>,
    /// Every connected client, by its cancel key.
    pub clients: Arc<ClientRegistry>,
    /// Cancelled when SIGTERM/SIGINT asks the process to drain; only
    /// through [`App::begin_shutdown`], which also tells the clients.
    pub shutdown: CancellationToken,
    pools: DashMap<PoolKey, Pool>,
    db_limits: DashMap<String, (u32, Arc<Semaphore>)>,
    user_limits: DashMap<String, (u32, Arc<Semaphore>)>,
    /// Verifiers derived from plaintext passwords, so a login does not pay
    /// for PBKDF2 every time. Keyed by user; the password checks freshness.
    scram_cache: DashMap<String, (String, ScramVerifier)>,
    /// Keys the stand-in verifiers of unknown users (see
    /// [`ScramVerifier::decoy`]); never leaves the process.
    decoy_key: [u8; 32],
    /// Running topology providers, started when a pool first needs one.
    clusters: DashMap<String, Arc<Cluster>>,
    /// RELOAD from the admin console: answered by the signal loop, which
    /// knows the config file.
    reload_tx: tokio::sync::mpsc::UnboundedSender<ReloadReply>,
    reload_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ReloadReply>>>,
    /// Client logins refused (metrics).
    pub auth_failures: std::sync::atomic::AtomicU64,
    /// SHOW STATS averages.
    pub(crate) history: std::sync::Mutex<crate::pool::history::History>,
}

/// Where a reload's outcome goes.
pub type ReloadReply = tokio::sync::oneshot::Sender<Result<(), String>>;

impl App {
    pub fn new(config: Config, auth: AuthFile) -> Arc<Self> {
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        Arc::new_cyclic(|me| App {
            me: me.clone(),
            config: ArcSwap::from_pointee(config),
            auth: ArcSwap::from_pointee(auth),
            tls: ArcSwap::from_pointee(Default::default()),
            clients: Arc::default(),
            client_keys: Arc::default(),
            dns: Arc::default(),
            looked_up: DashMap::new(),
            shutdown: CancellationToken::new(),
            pools: DashMap::new(),
            db_limits: DashMap::new(),
            user_limits: DashMap::new(),
            scram_cache: DashMap::new(),
            decoy_key: rand::random(),
            clusters: DashMap::new(),
            reload_tx,
            reload_rx: std::sync::Mutex::new(Some(reload_rx)),
            history: Default::default(),
            auth_failures: Default::default(),
        })
    }

    /// Starts the drain: listeners stop, every client is told (its kill
    /// switch fires; a client in a transaction finishes it first).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.clients.kill_all();
    }

    /// The pool serving `user` on logical database `db`, created on first
    /// use; None when the database is not configured.
    pub fn pool_for(&self, db: &str, user: &str) -> Option<Pool> {
        let cfg = self.config.load();
        let dbc = cfg.resolve_database(db)?;
        let dbc = &dbc;
        // A database with a forced server user has one pool for all clients.
        let key = PoolKey {
            db: db.to_string(),
            user: dbc.user.clone().unwrap_or_else(|| user.to_string()),
        };
        if let Some(p) = self.pools.get(&key) {
            return Some(p.clone());
        }
        let settings = self.settings_for(&cfg, db, dbc, &key.user);
        let limits = self.limits_for(&cfg, db, dbc, &key.user);
        let routed = settings.route.is_some();
        let mut created = false;
        let pool = self
            .pools
            .entry(key.clone())
            .or_insert_with(|| {
                created = true;
                Pool::new(key, settings, limits)
            })
            .clone();
        if created && routed {
            let (me, key) = (self.me.clone(), pool.key().clone());
            pool.follow_topology(Box::new(move |generation, lost| {
                if let Some(app) = me.upgrade() {
                    app.clients.retire(&key, generation, lost);
                }
            }));
        }
        Some(pool)
    }

    /// The SCRAM verifier a client proves itself against, if the secret
    /// can make one (an md5 hash cannot).
    pub fn scram_verifier(&self, user: &str, secret: &Secret) -> Option<ScramVerifier> {
        match secret {
            Secret::Scram(v) => Some(v.clone()),
            Secret::Md5(_) => None,
            Secret::Plain(p) => {
                if let Some(e) = self.scram_cache.get(user) {
                    if e.0 == *p {
                        return Some(e.1.clone());
                    }
                }
                let v = secret.scram_verifier()?;
                self.scram_cache
                    .insert(user.to_string(), (p.clone(), v.clone()));
                Some(v)
            }
        }
    }

    /// What an unknown user's SCRAM exchange runs against.
    pub fn decoy_verifier(&self, user: &str) -> ScramVerifier {
        ScramVerifier::decoy(&self.decoy_key, user)
    }

    /// Pool mode for a client (users may override the database's).
    pub fn pool_mode(&self, db: &str, user: &str) -> PoolMode {
        let cfg = self.config.load();
        cfg.resolve_database(db)
            .map(|d| cfg.pool_mode_for(&d, user))
            .unwrap_or(cfg.pool_mode)
    }

    fn settings_for(
        &self,
        cfg: &Config,
        db: &str,
        dbc: &DatabaseConfig,
        server_user: &str,
    ) -> PoolSettings {
        let mode = cfg.pool_mode_for(dbc, server_user);
        let secret = match &dbc.password {
            Some(p) => Some(Secret::Plain(p.clone())),
            None => self.auth.load().get(server_user).cloned().or_else(|| {
                // auth_query ran at the client's login, before the pool was made.
                self.looked_up.get(server_user).and_then(|e| e.0.clone())
            }),
        };
        let mut startup = Vec::new();
        for (name, value) in [
            ("application_name", &dbc.application_name),
            ("client_encoding", &dbc.client_encoding),
            ("DateStyle", &dbc.datestyle),
            ("TimeZone", &dbc.timezone),
        ] {
            if let Some(v) = value {
                startup.push((name.to_string(), v.clone()));
            }
        }
        let reset = !cfg.server_reset_query.trim().is_empty()
            && (mode == PoolMode::Session || cfg.server_reset_query_always);
        PoolSettings {
            target: ServerTarget {
                host: dbc.host.clone(),
                port: dbc.port,
                dbname: dbc.dbname.clone().unwrap_or_else(|| db.to_string()),
                user: server_user.to_string(),
                secret,
                client_keys: Some(self.client_keys.clone()),
                startup,
                tls: self.tls.load().server.clone(),
                connect_timeout: cfg.server_connect_timeout,
                login_timeout: cfg.server_login_timeout,
                tcp: crate::sockopt::TcpOptions::from_config(cfg),
                dns: self.dns_for(cfg),
                balance: Arc::new(crate::net::hosts::HostCursor::new(
                    dbc.load_balance_hosts.unwrap_or_default(),
                )),
            },
            mode,
            size: cfg.pool_size_for(dbc, server_user),
            min_size: dbc.min_pool_size.unwrap_or(cfg.min_pool_size),
            reserve_size: dbc.reserve_pool_size.unwrap_or(cfg.reserve_pool_size),
            reserve_timeout: cfg.reserve_pool_timeout,
            query_wait_timeout: cfg.query_wait_timeout,
            lifetime: cfg.server_lifetime,
            idle_timeout: cfg.server_idle_timeout,
            reset_query: reset.then(|| cfg.server_reset_query.clone()),
            check: (!cfg.server_check_query.trim().is_empty()).then(|| {
                Arc::new(ServerCheck {
                    query: cfg.server_check_query.clone(),
                    delay: cfg.server_check_delay,
                    timeout: cfg.server_check_timeout,
                })
            }),
            route: dbc
                .cluster
                .as_ref()
                .and_then(|name| self.cluster(cfg, name))
                .map(|c| Arc::new(Route::new(c, dbc.role.unwrap_or_default()))),
        }
    }

    /// The shared DNS cache with the config's TTLs.
    fn dns_for(&self, cfg: &Config) -> crate::net::Dns {
        crate::net::Dns {
            cache: self.dns.clone(),
            ttl: crate::net::dns::DnsTtl::from_config(cfg),
        }
    }

    /// The running provider of cluster `name`, started on first use and
    /// restarted when its config changed.
    fn cluster(&self, cfg: &Config, name: &str) -> Option<Arc<Cluster>> {
        let c = cfg.clusters.get(name)?;
        let mut entry = self
            .clusters
            .entry(name.to_string())
            .or_insert_with(|| self.start_cluster(cfg, name, c));
        if entry.config != *c {
            entry.stop();
            *entry = self.start_cluster(cfg, name, c);
        }
        Some(entry.clone())
    }

    fn start_cluster(&self, cfg: &Config, name: &str, c: &ClusterConfig) -> Arc<Cluster> {
        let probe = (c.provider == Provider::Static).then(|| {
            let user = c.probe_user.clone().unwrap_or_default();
            let secret = match &c.probe_password {
                Some(p) => Some(Secret::Plain(p.clone())),
                None => self.auth.load().get(&user).cloned(),
            };
            ServerTarget {
                host: String::new(),
                port: 0,
                dbname: c.probe_dbname.clone(),
                user,
                secret,
                client_keys: Some(self.client_keys.clone()),
                startup: vec![("application_name".into(), "pgwolf-probe".into())],
                tls: self.tls.load().server.clone(),
                connect_timeout: c.probe_timeout.min(cfg.server_connect_timeout),
                login_timeout: c.probe_timeout.min(cfg.server_login_timeout),
                tcp: crate::sockopt::TcpOptions::from_config(cfg),
                dns: self.dns_for(cfg),
                balance: Arc::default(),
            }
        });
        Cluster::start(name, c.clone(), probe)
    }

    /// The configured cluster `name`, its provider started if no pool has
    /// needed it yet.
    pub fn cluster_named(&self, name: &str) -> Option<Arc<Cluster>> {
        let cfg = self.config.load();
        self.cluster(&cfg, name)
    }

    /// Topology snapshots of every running cluster (admin console, tests).
    pub fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.clusters.iter().map(|c| c.value().clone()).collect()
    }

    fn limits_for(&self, cfg: &Config, db: &str, dbc: &DatabaseConfig, user: &str) -> SharedLimits {
        let db_max = dbc.max_db_connections.unwrap_or(cfg.max_db_connections);
        let user_max = cfg.max_user_connections_for(user);
        let me = self.me.clone();
        let evict = move |asking: &PoolKey| {
            if let Some(app) = me.upgrade() {
                app.evict_for(asking, db_max > 0, user_max > 0);
            }
        };
        SharedLimits {
            db: shared_limit(&self.db_limits, db, db_max),
            user: shared_limit(&self.user_limits, user, user_max),
            evict: (db_max > 0 || user_max > 0).then(|| Arc::new(evict) as _),
        }
    }

    /// Swaps in a new config and auth file; pools of databases still
    /// configured are updated in place, connected clients stay connected.
    pub fn reload(&self, config: Config, auth: AuthFile) {
        self.config.store(Arc::new(config));
        self.auth.store(Arc::new(auth));
        let cfg = self.config.load();
        self.clusters.retain(|name, c| {
            let keep = cfg.clusters.get(name) == Some(&c.config);
            if !keep {
                c.stop();
            }
            keep
        });
        self.pools
            .retain(|key, pool| match cfg.resolve_database(&key.db) {
                Some(dbc) => {
                    let dbc = &dbc;
                    let settings = self.settings_for(&cfg, &key.db, dbc, &key.user);
                    let limits = self.limits_for(&cfg, &key.db, dbc, &key.user);
                    pool.update(settings, limits);
                    true
                }
                None => {
                    // Clients still holding this pool finish with it; no new ones.
                    pool.close_idle();
                    false
                }
            });
    }

    /// Frees a connection slot for `asking` by closing an idle connection of
    /// another pool on the same database (or of the same user).
    fn evict_for(&self, asking: &PoolKey, by_db: bool, by_user: bool) {
        for p in self.pools.iter() {
            let k = p.key();
            let shares = (by_db && k.db == asking.db) || (by_user && k.user == asking.user);
            if k != asking && shares && p.value().evict_one() {
                return;
            }
        }
    }

    /// Forgets a pool made from the "*" entry once its first server
    /// connection failed (most often: the server has no such database) and
    /// nothing else uses it. Database names a client makes up, before it
    /// authenticates (auth_query looks users up in the client's database)
    /// or after, then leave no pool behind: what a client can make pgwolf
    /// keep is bounded by the databases the server has.
    pub fn forget_failed_wildcard_pool(&self, pool: &Pool) {
        if !self.config.load().through_wildcard(&pool.key().db) {
            return;
        }
        let forgotten = self.pools.remove_if(pool.key(), |_, p| {
            p.open_count() == 0 && p.stats().clients.load(std::sync::atomic::Ordering::Relaxed) == 0
        });
        if forgotten.is_some() {
            let db = &pool.key().db;
            if !self.pools.iter().any(|p| &p.key().db == db) {
                self.db_limits.remove(db);
            }
            tracing::debug!(db = %pool.key().db, user = %pool.key().user, "pool of the \"*\" entry forgotten after its first connection failed");
        }
    }

    /// Every pool, for maintenance and (later) the admin console.
    pub fn pools(&self) -> Vec<Pool> {
        self.pools.iter().map(|p| p.value().clone()).collect()
    }

    /// Asks the signal loop to reload the config file; its answer.
    pub async fn request_reload(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reload_tx
            .send(tx)
            .map_err(|_| "this pgwolf reloads on SIGHUP only".to_string())?;
        rx.await
            .map_err(|_| "the reload was not answered".to_string())?
    }

    /// For the signal loop: the RELOAD requests (once).
    pub fn take_reload_requests(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<ReloadReply>> {
        self.reload_rx.lock().unwrap().take()
    }

    /// Every [`crate::pool::JANITOR_PERIOD`], wakes the clients whose wait
    /// for a pool slot is past query_wait_timeout (see `pool/wait.rs`).
    /// Its own task: `maintenance` can be held up by a server connect, and
    /// it stops at shutdown, while waits during the drain must still end.
    pub async fn wait_janitor(self: Arc<Self>) {
        let me = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(crate::pool::JANITOR_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = me.upgrade() else { return };
            let now = std::time::Instant::now();
            for pool in app.pools.iter() {
                pool.stats().waiters.wake_overdue(now);
            }
        }
    }

    /// Runs pool upkeep every second until shutdown.
    pub async fn maintenance(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let pools = self.pools();
            for pool in &pools {
                pool.maintain().await;
            }
            let (period, log) = {
                let cfg = self.config.load();
                (cfg.stats_period, cfg.log_stats)
            };
            let done = self.history.lock().unwrap().tick(&pools, period);
            if let (Some(averages), true) = (done, log) {
                for (db, a) in &averages {
                    tracing::info!("{}", crate::pool::history::History::log_line(db, a));
                }
            }
        }
    }
}

/// One semaphore per name, replaced when its configured size changes
/// (connections opened under the old cap keep their old permits).
fn shared_limit(
    map: &DashMap<String, (u32, Arc<Semaphore>)>,
    name: &str,
    max: u32,
) -> Option<Arc<Semaphore>> {
    if max == 0 {
        map.remove(name);
        return None;
    }
    let mut e = map
        .entry(name.to_string())
        .or_insert_with(|| (max, Arc::new(Semaphore::new(max as usize))));
    if e.0 != max {
        *e = (max, Arc::new(Semaphore::new(max as usize)));
    }
    Some(e.1.clone())
}
