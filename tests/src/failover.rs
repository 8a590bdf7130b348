//! The clients and figures of the lost-node scenarios (issue 21), for
//! the tests in `tests/tests/lost_node.rs` and the side-by-side report
//! (`scripts/failover-report`): a Patroni cluster on hosts of its own
//! ([`crate::netns`]) behind a pooler, pgwolf or PgBouncer ([`Pooler`]),
//! with writers, readers and a long transaction running through it
//! ([`Load`]) while a fault takes the primary away ([`lose_the_primary`]).

use crate::clients::{config_at, try_connect, try_connect_with};
use crate::ha::{HaCluster, HaOptions, MemberInfo, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use crate::pgbouncer::PgBouncer;
use crate::{connect, userlist, within, Pgwolf};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

/// The value the long transaction inserts and never commits.
pub const LONG_TX_VALUE: i64 = -1;

/// What the clients of one kind (writers, or readers) saw: acknowledged
/// values, errors with when they came, and slow requests.
#[derive(Default)]
pub struct Writes {
    pub acked: Mutex<Vec<(i64, Instant)>>,
    pub errors: Mutex<Vec<(Instant, String)>>,
    /// (started, answered) of every request that had to wait over 1 s.
    pub slow: Mutex<Vec<(Instant, Instant)>>,
    /// Requests still unanswered when the clients were stopped (and their
    /// start), for poolers that leave a client waiting on a lost server.
    pub unanswered: Mutex<Vec<Instant>>,
    /// Readers only: which member's address answered each read, and when.
    pub served_by: Mutex<Vec<(Ipv4Addr, Instant)>>,
    /// The next value to write; taken when a request is sent, so values
    /// at or above a reading of it were first sent after that reading.
    next: AtomicI64,
}

impl Writes {
    /// The longest any request waited (0 when none waited over 1 s).
    pub fn longest_wait(&self) -> Duration {
        let slow = self.slow.lock().unwrap();
        slow.iter().map(|(s, a)| *a - *s).max().unwrap_or_default()
    }

    /// Requests acknowledged after `from` and before `to`.
    pub fn acked_between(&self, from: Instant, to: Instant) -> usize {
        let acked = self.acked.lock().unwrap();
        acked
            .iter()
            .filter(|(_, at)| *at > from && *at < to)
            .count()
    }

    /// The errors counted by SQLSTATE ("bare" for no ErrorResponse).
    pub fn errors_by_code(&self) -> BTreeMap<String, usize> {
        let mut by_code = BTreeMap::new();
        for (_, m) in self.errors.lock().unwrap().iter() {
            let code = m.split(':').next().unwrap_or_default().to_string();
            *by_code.entry(code).or_default() += 1;
        }
        by_code
    }

    /// Reads answered by `addr` after `from`.
    pub fn served_by_after(&self, addr: Ipv4Addr, from: Instant) -> usize {
        let served = self.served_by.lock().unwrap();
        served
            .iter()
            .filter(|(a, at)| *a == addr && *at > from)
            .count()
    }

    /// The distinct error messages.
    pub fn messages(&self) -> BTreeSet<String> {
        let errors = self.errors.lock().unwrap();
        errors.iter().map(|(_, m)| m.clone()).collect()
    }
}

/// `SQLSTATE: message`, or `bare: ...` when the connection just ended
/// without an ErrorResponse: a defect wherever PostgreSQL itself would
/// have answered.
pub fn described(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => format!("bare: {e}"),
    }
}

/// A client looping one statement on `db` through the pooler at `port`
/// (INSERTs into `acks` on the primary database, on its read-only
/// alias a SELECT of the answering server's address), reconnecting after an error that ended its
/// connection, until `stop`.
async fn worker(port: u16, db: String, w: Arc<Writes>, stop: Arc<AtomicBool>) {
    let writes = db == HA_APP_DB;
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match try_connect(port, HA_APP_USER, HA_APP_PASSWORD, &db).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    w.errors
                        .lock()
                        .unwrap()
                        .push((Instant::now(), described(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().unwrap();
        let v = w.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let sql = if writes {
            format!("INSERT INTO acks VALUES ({v})")
        } else {
            "SELECT host(inet_server_addr())".to_string()
        };
        let r = {
            let request = c.simple_query(&sql);
            tokio::pin!(request);
            // Stopped while waiting: counted as unanswered.
            loop {
                tokio::select! {
                    r = &mut request => break r,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stop.load(Ordering::Relaxed) {
                            w.unanswered.lock().unwrap().push(started);
                            return;
                        }
                    }
                }
            }
        };
        let answered = Instant::now();
        if answered - started > Duration::from_secs(1) {
            w.slow.lock().unwrap().push((started, answered));
        }
        match r {
            Ok(messages) => {
                w.acked.lock().unwrap().push((v, answered));
                let addr = messages.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0)?.parse::<Ipv4Addr>().ok(),
                    _ => None,
                });
                if let Some(addr) = addr {
                    w.served_by.lock().unwrap().push((addr, answered));
                }
            }
            Err(e) => {
                w.errors.lock().unwrap().push((answered, described(&e)));
                // A FATAL ends the connection; the driver may not have seen
                // the close yet, and a request on it would only fail again.
                let fatal = e.as_db_error().is_some_and(|d| d.severity() == "FATAL");
                if fatal || c.is_closed() {
                    client = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The long transaction's answer: when, and what.
pub type LongAnswer = (Instant, Result<(), tokio_postgres::Error>);

/// The clients of a scenario: 20 writers, 10 readers on the read-only
/// alias and, optionally, one long transaction (an INSERT of
/// [`LONG_TX_VALUE`], then a 60 s statement) open on the primary.
pub struct Load {
    pub writes: Arc<Writes>,
    pub reads: Arc<Writes>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    long: Option<tokio::task::JoinHandle<LongAnswer>>,
}

impl Load {
    /// Starts the clients on the pooler at `port` and runs them for 2 s.
    pub async fn start(port: u16, with_long: bool) -> Load {
        let (writes, reads) = (Arc::new(Writes::default()), Arc::new(Writes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let ro = format!("{HA_APP_DB}_ro");
        let mut tasks: Vec<_> = (0..20)
            .map(|_| {
                let db = HA_APP_DB.to_string();
                tokio::spawn(worker(port, db, writes.clone(), stop.clone()))
            })
            .collect();
        tasks.extend(
            (0..10).map(|_| tokio::spawn(worker(port, ro.clone(), reads.clone(), stop.clone()))),
        );
        let mut long = None;
        if with_long {
            let long_tx = connect(port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
            long_tx
                .batch_execute(&format!("BEGIN; INSERT INTO acks VALUES ({LONG_TX_VALUE})"))
                .await
                .unwrap();
            long = Some(tokio::spawn(async move {
                let r = long_tx.batch_execute("SELECT pg_sleep(60)").await;
                (Instant::now(), r)
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !writes.acked.lock().unwrap().is_empty(),
            "no write before the fault"
        );
        assert!(
            !reads.acked.lock().unwrap().is_empty(),
            "no read before the fault"
        );
        Load {
            writes,
            reads,
            stop,
            tasks,
            long,
        }
    }

    /// Stops the clients (a request still waiting is counted as
    /// unanswered); the long transaction's answer, if it ran and was
    /// answered.
    pub async fn stop(self) -> Option<LongAnswer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            within(40, "a client to stop", t).await.unwrap();
        }
        let mut long = self.long?;
        tokio::select! {
            r = &mut long => Some(r.unwrap()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                long.abort();
                None
            }
        }
    }
}

/// Which pooler the clients go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// pgwolf, `patroni` provider polling every 200 ms, pool size 10.
    Pgwolf,
    /// pgwolf, `static` provider: every member probed with
    /// `pg_is_in_recovery()` every 200 ms, no Patroni API; pool size 10.
    PgwolfStatic,
    /// Debian's PgBouncer, pool size 10, pointed at the leader's and one
    /// replica's address as a Kubernetes Service would point it, and
    /// re-pointed (rewritten `[databases]`, SIGHUP) within 200 ms of
    /// Patroni's `/cluster` naming another leader: the best a PgBouncer
    /// user can script. Its TCP settings are pgwolf's defaults, so the two
    /// differ in what they do, not in what they were told.
    PgBouncer,
}

impl Pooler {
    pub fn name(self) -> &'static str {
        match self {
            Pooler::Pgwolf => "pgwolf",
            Pooler::PgwolfStatic => "pgwolf, static provider",
            Pooler::PgBouncer => "PgBouncer 1.18",
        }
    }
}

/// The pooler in front of a cluster; stopped on `Drop`.
pub struct Front {
    port: u16,
    /// Held for its `Drop` (which prints its log if a test failed).
    _pgwolf: Option<Pgwolf>,
    /// Held for its `Drop`, which stops re-pointing PgBouncer.
    _repointer: Option<Repointer>,
}

impl Front {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// pgwolf's log lines so far that name a topology change (the pool
    /// following it, a primary changing); empty for PgBouncer.
    pub fn topology_log(&self) -> Vec<String> {
        let Some(p) = &self._pgwolf else {
            return Vec::new();
        };
        p.log()
            .lines()
            .filter(|l| l.contains("follows the topology") || l.contains("primary"))
            .map(str::to_string)
            .collect()
    }
}

/// A cluster whose members and etcd have hosts of their own, `pooler` in
/// front of it, and a table `acks` made through it.
pub async fn cluster_behind(pooler: Pooler, opts: HaOptions) -> (HaCluster, Front) {
    let ha = HaCluster::start(HaOptions {
        netns: true,
        ..opts
    });
    let users = userlist(&[(HA_APP_USER, HA_APP_PASSWORD)]);
    let front = match pooler {
        Pooler::Pgwolf | Pooler::PgwolfStatic => {
            let provider = if pooler == Pooler::Pgwolf {
                let urls: Vec<String> = ha.rest_urls().iter().map(|u| format!("\"{u}\"")).collect();
                format!(
                    "provider = \"patroni\"\npatroni_urls = [{}]\n",
                    urls.join(", ")
                )
            } else {
                let hosts: Vec<String> = ha
                    .members()
                    .iter()
                    .map(|m| format!("\"{}:{}\"", m.host, m.pg_port))
                    .collect();
                format!(
                    "provider = \"static\"\nhosts = [{}]\nprobe_user = \"{HA_APP_USER}\"\n\
                     probe_dbname = \"{HA_APP_DB}\"\n",
                    hosts.join(", ")
                )
            };
            let toml = format!(
                "pool_mode = \"transaction\"\nstats_users = [\"{HA_APP_USER}\"]\n\n\
                 [clusters.ha]\n{provider}\
                 poll_interval = \"200ms\"\nprobe_timeout = \"1s\"\nfailover_wait_timeout = \"30s\"\n\n\
                 [databases.{HA_APP_DB}]\ncluster = \"ha\"\npool_size = 10\n"
            );
            let proxy = Pgwolf::start(&toml, &users);
            Front {
                port: proxy.port(),
                _pgwolf: Some(proxy),
                _repointer: None,
            }
        }
        Pooler::PgBouncer => {
            let members = ha.members();
            let view = roles(&members).expect("the cluster's roles");
            let settings =
                "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 200\n\
                 tcp_keepalive = 1\ntcp_keepidle = 10\ntcp_keepintvl = 5\ntcp_keepcnt = 3\n\
                 tcp_user_timeout = 25000\n";
            let bouncer = Arc::new(PgBouncer::start(
                &databases(&members, &view),
                settings,
                &users,
            ));
            Front {
                port: bouncer.port(),
                _pgwolf: None,
                _repointer: Some(Repointer::start(bouncer, members, view)),
            }
        }
    };
    let setup = connect(front.port(), HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
    setup
        .batch_execute("CREATE TABLE acks (v bigint PRIMARY KEY)")
        .await
        .unwrap();
    (ha, front)
}

/// The running leader and a running replica as `GET /cluster` of the
/// first member that answers names them.
fn roles(members: &[MemberInfo]) -> Option<(String, Option<String>)> {
    members.iter().find_map(|m| {
        let r = crate::ha::http::get_at(m.rest(), "/cluster", Duration::from_millis(500)).ok()?;
        let json = r.json()?;
        let list = json["members"].as_array()?;
        let running = |role: &str| {
            list.iter()
                .filter(|x| x["role"] == role && x["state"] == "running")
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        };
        let leader = running("leader").into_iter().next()?;
        let mut replicas = running("replica");
        replicas.extend(running("sync_standby"));
        replicas.sort();
        Some((leader, replicas.into_iter().next()))
    })
}

/// PgBouncer's `[databases]` for these roles.
fn databases(members: &[MemberInfo], (leader, replica): &(String, Option<String>)) -> String {
    let at = |name: &str| {
        let m = members.iter().find(|m| m.name == name).expect("a member");
        format!("host={} port={} dbname={HA_APP_DB}", m.host, m.pg_port)
    };
    let ro = replica.as_deref().unwrap_or(leader);
    format!(
        "{HA_APP_DB} = {}\n{HA_APP_DB}_ro = {}\n",
        at(leader),
        at(ro)
    )
}

/// Re-points PgBouncer when Patroni names another leader or replica.
struct Repointer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Repointer {
    fn start(
        bouncer: Arc<PgBouncer>,
        members: Vec<MemberInfo>,
        mut current: (String, Option<String>),
    ) -> Repointer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                if let Some(view) = roles(&members) {
                    if view != current {
                        bouncer.repoint(&databases(&members, &view));
                        current = view;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Repointer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Repointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The running leader other than `old` that a member other than `old`
/// reports (`GET /cluster`; the lost member is not asked, as it would
/// only time out or tell its stale view).
pub fn leader_per_others(ha: &HaCluster, old: &str) -> Option<String> {
    ha.members().iter().filter(|m| m.name != old).find_map(|m| {
        let r = crate::ha::http::get_at(m.rest(), "/cluster", Duration::from_millis(500)).ok()?;
        let json = r.json()?;
        json["members"].as_array()?.iter().find_map(|x| {
            let leader = x["role"] == "leader" && x["state"] == "running" && x["name"] != old;
            leader.then(|| x["name"].as_str().unwrap_or_default().to_string())
        })
    })
}

/// Scenario e's fault: member `name` cut off from the other members and
/// etcd (both ways), still reached by the pooler and the clients.
pub fn cut_from_peers(ha: &HaCluster, name: &str) {
    let lab = ha.lab().expect("the cluster's hosts");
    let mut peers: Vec<std::net::Ipv4Addr> = ha
        .members()
        .iter()
        .filter(|m| m.name != name)
        .map(|m| m.host.parse().unwrap())
        .collect();
    peers.push(lab.host("etcd").addr);
    lab.cut_between(name, &peers, None);
}

/// What losing the primary cost the clients.
#[derive(Debug)]
pub struct PrimaryLoss {
    pub old: String,
    pub new: String,
    /// The fault to Patroni publishing the new leader.
    pub fault_to_publication: Duration,
    /// Publication to the first write acknowledged through the pooler;
    /// None: none within the run.
    pub first_write: Option<Duration>,
    /// Publication to the answer of the last request that was waiting
    /// then; None: one was never answered within the run.
    pub waiting_answered: Option<Duration>,
    pub longest_write_wait: Duration,
    pub writes_acked: usize,
    pub write_errors: BTreeMap<String, usize>,
    pub write_messages: BTreeSet<String>,
    pub unanswered_writes: usize,
    /// Acknowledged writes missing from the new leader: (value, whether
    /// acknowledged after the publication).
    pub lost: Vec<(i64, bool)>,
    /// Rows on the old primary, read inside its host before the fault is
    /// undone, that the new leader lacks (Patroni rewinds them away when
    /// it rejoins): (all of them, those first sent after the
    /// publication). None: it could not be read (hung).
    pub old_divergent: Option<(usize, usize)>,
    pub reads_after: usize,
    /// Reads the old primary answered after the publication: a member
    /// the cluster has lost serves only stale data.
    pub reads_from_old_after: usize,
    pub longest_read_wait: Duration,
    pub read_errors: BTreeMap<String, usize>,
    /// The long transaction: its answer (SQLSTATE, "bare", or "none" when
    /// unanswered) and when relative to the publication (negative: before).
    pub long_answer: String,
    pub long_after: Option<f64>,
    /// Whether the long transaction's INSERT is on the new leader.
    pub long_committed: bool,
}

/// Runs [`Load`] through `pooler` in front of a cluster started with
/// `opts` (the scenarios use synchronous mode, where no acknowledged
/// write may be lost), lets `fault` take the primary away (it gets the leader's name and
/// returns what undoes it), waits for Patroni to publish a new leader, and
/// observes `observe` longer. Returns the figures, the cluster, the
/// pooler and what `fault` returned, for the caller to heal.
pub async fn lose_the_primary<F>(
    pooler: Pooler,
    opts: HaOptions,
    observe: Duration,
    fault: impl FnOnce(&HaCluster, &str) -> F,
) -> (PrimaryLoss, HaCluster, Front, F) {
    let (ha, front) = cluster_behind(pooler, opts).await;
    let load = Load::start(front.port(), true).await;
    let old = ha.leader().expect("a leader");
    let at_fault = Instant::now();
    let undo = fault(&ha, &old);
    let new = within(60, "Patroni to publish a new leader", async {
        loop {
            if let Some(new) = leader_per_others(&ha, &old) {
                return new;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let published = Instant::now();
    let first_sent_after = load.writes.next.load(Ordering::Relaxed);
    tokio::time::sleep(observe).await;
    let (w, r) = (load.writes.clone(), load.reads.clone());
    let long = load.stop().await;
    let end = Instant::now();

    let acked = w.acked.lock().unwrap().clone();
    let slow = w.slow.lock().unwrap().clone();
    let unanswered = w.unanswered.lock().unwrap().clone();
    let first_write = acked
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > published)
        .min()
        .map(|at| at - published);
    let waiting_answered = if unanswered.iter().any(|s| *s < published) {
        None
    } else {
        Some(
            slow.iter()
                .filter(|(started, answered)| *started < published && *answered > published)
                .map(|(_, answered)| *answered - published)
                .max()
                .unwrap_or_default(),
        )
    };
    let (long_answer, long_after) = match &long {
        Some((at, Ok(()))) => ("ok".to_string(), Some(signed(*at, published))),
        Some((at, Err(e))) => (
            described(e)
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
            Some(signed(*at, published)),
        ),
        None => ("none".to_string(), None),
    };

    let mut lost = Vec::new();
    let mut long_committed = false;
    // Read from the new leader itself, not through the pooler: a pooler
    // still stuck on the lost member (PgBouncer until tcp_user_timeout)
    // must not stop the count of what landed.
    let leader = ha
        .members()
        .into_iter()
        .find(|m| m.name == new)
        .expect("the new leader is a member");
    let direct = config_at(
        &leader.host,
        leader.pg_port,
        HA_APP_USER,
        HA_APP_PASSWORD,
        HA_APP_DB,
    );
    let present = within(60, "the new leader's rows", async {
        loop {
            if let Ok(c) = try_connect_with(&direct).await {
                if let Ok(rows) = c.query("SELECT v FROM acks", &[]).await {
                    return rows.iter().map(|r| r.get(0)).collect::<HashSet<i64>>();
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    for (v, at) in &acked {
        if !present.contains(v) {
            lost.push((*v, *at > published));
        }
    }
    long_committed |= present.contains(&LONG_TX_VALUE);
    let old_info = ha
        .members()
        .into_iter()
        .find(|m| m.name == old)
        .expect("the old leader is a member");
    let old_divergent = tokio::task::block_in_place(|| rows_inside(&ha, &old_info)).map(|rows| {
        let divergent: Vec<i64> = rows.difference(&present).copied().collect();
        let after = divergent.iter().filter(|v| **v >= first_sent_after).count();
        (divergent.len(), after)
    });
    let reads_from_old_after = r.served_by_after(old_info.host.parse().unwrap(), published);
    let figures = PrimaryLoss {
        old,
        new,
        fault_to_publication: published - at_fault,
        first_write,
        waiting_answered,
        longest_write_wait: w.longest_wait(),
        writes_acked: acked.len(),
        write_errors: w.errors_by_code(),
        write_messages: w.messages(),
        unanswered_writes: unanswered.len(),
        lost,
        old_divergent,
        reads_after: r.acked_between(published, end),
        reads_from_old_after,
        longest_read_wait: r.longest_wait(),
        read_errors: r.errors_by_code(),
        long_answer,
        long_after,
        long_committed,
    };
    (figures, ha, front, undo)
}

/// The values in `acks` on `member`, read with psql inside its own host
/// (over its loopback, which no fault cuts); None when it does not answer
/// within 30 s (hung, or still shutting down: demoted, it waits up to
/// `wal_sender_timeout` on walsenders whose replicas are cut off).
fn rows_inside(ha: &HaCluster, member: &MemberInfo) -> Option<HashSet<i64>> {
    let lab = ha.lab().expect("the cluster's hosts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut why = String::new();
    while Instant::now() < deadline {
        let mut cmd = lab.command(&member.name, "timeout".as_ref());
        cmd.arg("5")
            .arg(crate::tools::pg_bin("psql"))
            .args(["-X", "-A", "-t", "-q", "-h", &member.host])
            .args(["-p", &member.pg_port.to_string(), "-U", HA_APP_USER])
            .args(["-d", HA_APP_DB, "-c", "SELECT v FROM acks"])
            .env("PGPASSWORD", HA_APP_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "3");
        match cmd.output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                return Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect());
            }
            Ok(out) => why = String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => why = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{} not readable inside its host: {why}", member.name);
    None
}

/// `at - from` in seconds, negative when `at` came first.
fn signed(at: Instant, from: Instant) -> f64 {
    if at >= from {
        (at - from).as_secs_f64()
    } else {
        -(from - at).as_secs_f64()
    }
}

/// What a fault that leaves the primary where it was (or takes it away
/// only while the fault lasts) cost the clients.
#[derive(Debug)]
pub struct Outage {
    pub fault_lasted: Duration,
    pub writes_during: usize,
    pub reads_during: usize,
    pub longest_write_wait: Duration,
    pub longest_read_wait: Duration,
    pub write_errors: BTreeMap<String, usize>,
    pub read_errors: BTreeMap<String, usize>,
    pub write_messages: BTreeSet<String>,
    pub read_messages: BTreeSet<String>,
    /// Requests (writes and reads) still unanswered at the end.
    pub unanswered: usize,
    /// The fault to the last write acknowledged before the heal.
    pub writes_stopped: Option<Duration>,
    /// The heal to the first write acknowledged after it; None: none
    /// within the run.
    pub first_write_after_heal: Option<Duration>,
}

/// Runs [`Load`] (no long transaction) through `pooler` in front of a
/// cluster, lets `fault` act for `lasts`, undoes it with `heal`, and
/// observes `after` longer. Returns the figures, the cluster and the
/// pooler.
pub async fn ride_out<U>(
    pooler: Pooler,
    opts: HaOptions,
    lasts: Duration,
    after: Duration,
    fault: impl FnOnce(&HaCluster) -> U,
    heal: impl FnOnce(&HaCluster, U),
) -> (Outage, HaCluster, Front) {
    let (ha, front) = cluster_behind(pooler, opts).await;
    let load = Load::start(front.port(), false).await;
    let (w, r) = (load.writes.clone(), load.reads.clone());
    let cut = Instant::now();
    let undo = fault(&ha);
    tokio::time::sleep(lasts).await;
    let healed = Instant::now();
    heal(&ha, undo);
    tokio::time::sleep(after).await;
    load.stop().await;
    let times: Vec<Instant> = w.acked.lock().unwrap().iter().map(|(_, at)| *at).collect();
    let outage = Outage {
        fault_lasted: healed - cut,
        writes_during: w.acked_between(cut, healed),
        reads_during: r.acked_between(cut, healed),
        longest_write_wait: w.longest_wait(),
        longest_read_wait: r.longest_wait(),
        write_errors: w.errors_by_code(),
        read_errors: r.errors_by_code(),
        write_messages: w.messages(),
        read_messages: r.messages(),
        unanswered: w.unanswered.lock().unwrap().len() + r.unanswered.lock().unwrap().len(),
        writes_stopped: times
            .iter()
            .filter(|at| **at > cut && **at < healed)
            .max()
            .map(|at| *at - cut),
        first_write_after_heal: times
            .iter()
            .filter(|at| **at > healed)
            .min()
            .map(|at| *at - healed),
    };
    (outage, ha, front)
}
