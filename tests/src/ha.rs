//! [`HaCluster`]: a real local high-availability cluster for failover tests:
//! one etcd (v3 API), and 2–3 Patroni members each managing a PostgreSQL 15,
//! all on free loopback ports in a temp dir.
//!
//! Layout of the dir: `conf/` (member YAMLs, post-bootstrap script), `data/`
//! (`etcd`, `pgN`, made by etcd and Patroni), `run/` (Unix sockets, pgpass
//! files), `log/` (`etcd.log`, `pgN/patroni.log`, and `pgN/postgres.log`,
//! which is Patroni's stdout and stderr and so PostgreSQL's log too).
//!
//! Patroni and PostgreSQL refuse to run as root, so when the tests are root
//! everything runs as [`SERVER_USER`](crate::tools::SERVER_USER). The leader
//! is whichever member wins the race at bootstrap; never assume `pg1`.
//! Patroni starts postmasters in their own session, so they outlive a killed
//! Patroni: the harness stops them through `data/pgN/postmaster.pid`, and a
//! reaper process does the same if the test process dies without `Drop`.
//!
//! Needs Debian's `etcd-server` and `patroni` packages (`scripts/install-deps`).

mod config;
pub mod http;
pub mod pgbackrest;
mod procs;
pub mod rendered;
mod status;

use crate::ports::free_port;
use crate::tools::{give_to_server_user, pg_bin, read_lossy, running_as_root, tail, wait_bounded};
use procs::{ETCD, PATRONI};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const HA_SUPERUSER: &str = "postgres";
pub const HA_SUPERUSER_PASSWORD: &str = "supersecret";
/// Made by the post-bootstrap script: a login role owning [`HA_APP_DB`],
/// which holds table `probe (id bigserial, node text, ts timestamptz)`.
pub const HA_APP_USER: &str = "app";
pub const HA_APP_PASSWORD: &str = "app-secret";
pub const HA_APP_DB: &str = "app";
const REPLICATION_USER: &str = "replicator";
const REPLICATION_PASSWORD: &str = "replsecret";

const START_LIMIT: Duration = Duration::from_secs(120);
const PG_STOP_LIMIT: Duration = Duration::from_secs(10);
/// Patroni answers a switchover only once it is done (~2 s).
const SWITCHOVER_HTTP_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// Cluster shape and the DCS timings written at bootstrap.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// Number of Patroni members (2 or 3 is what the tests use).
    pub members: usize,
    /// Leader lease, seconds: how long a dead leader holds the key.
    pub ttl: u32,
    /// Seconds between HA loop runs.
    pub loop_wait: u32,
    /// Seconds DCS and PostgreSQL operations are retried before giving up.
    pub retry_timeout: u32,
    /// Patroni's `synchronous_mode`: a commit is acknowledged only once a
    /// standby has it, and only that standby may be promoted. Without it a
    /// failover loses whatever the new leader had not replayed yet, which a
    /// test of "no acknowledged write is lost" must not blame on pgwolf.
    pub synchronous_mode: bool,
    /// Patroni's `failsafe_mode`: a leader that loses the DCS stays
    /// primary while it reaches every other member's REST API.
    pub failsafe_mode: bool,
    /// Each member, and etcd, on a host of its own (a [`crate::netns::Lab`]
    /// the cluster owns), so a test can cut one off by dropping packets.
    pub netns: bool,
    /// Run the controller's rendering of a cluster ([`rendered::Rendered`],
    /// turned local by [`rendered::localize`]) instead of the harness's own
    /// member YAML. Its manifest then sets the timing and the modes; the
    /// fields above only shape the harness. [`HA_APP_USER`], its database
    /// and `probe` are made once a leader answers, as the controller makes
    /// declared users.
    pub rendered: Option<std::sync::Arc<rendered::Rendered>>,
}

impl Default for HaOptions {
    /// Three members, the fast profile: a dead node is replaced in ~6 s
    /// instead of ~10 s with Patroni's defaults.
    fn default() -> Self {
        HaOptions {
            members: 3,
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
            synchronous_mode: false,
            failsafe_mode: true,
            netns: false,
            rendered: None,
        }
    }
}

/// A member's fixed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub name: String,
    /// Its address: 127.0.0.1, or its lab host's.
    pub host: String,
    pub pg_port: u16,
    pub rest_port: u16,
}

impl MemberInfo {
    /// Its Patroni REST API.
    pub fn rest(&self) -> std::net::SocketAddr {
        let ip: std::net::IpAddr = self.host.parse().expect("an IP address");
        std::net::SocketAddr::new(ip, self.rest_port)
    }
}

/// One member as `GET /cluster` (the DCS view) reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub name: String,
    /// `leader`, `replica`, `standby_leader` or `sync_standby`.
    pub role: String,
    /// `running`, `starting`, `stopped`, `crashed`, ... (`streaming` on
    /// replicas in Patroni newer than 3.0).
    pub state: String,
    pub timeline: Option<u64>,
    /// Bytes behind the leader; replicas only.
    pub lag: Option<u64>,
}

struct Member {
    info: MemberInfo,
    /// `None` while killed or stopped by the test: such members are left out
    /// of [`HaCluster::wait_ready`].
    patroni: Mutex<Option<Child>>,
}

/// A running cluster; stopped and removed on `Drop`. Start it from the
/// test's own thread: Patroni and etcd die with the thread that spawned them.
pub struct HaCluster {
    scope: String,
    etcd_addr: std::net::SocketAddr,
    etcd: Mutex<Option<Child>>,
    members: Vec<Member>,
    synchronous_mode: bool,
    /// Passwords Patroni reads from its environment (rendered clusters).
    patroni_env: Vec<(String, String)>,
    reaper: Option<Child>,
    // Removed after everything has stopped.
    dir: TempDir,
    /// With `netns`: the hosts, removed last.
    lab: Option<crate::netns::Lab>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HaCluster {
    /// Start etcd and all members and wait (up to 120 s) until
    /// [`HaCluster::wait_ready`] holds.
    pub fn start(opts: HaOptions) -> HaCluster {
        assert!(opts.members >= 1, "an HA cluster needs members");
        assert!(
            opts.loop_wait + 2 * opts.retry_timeout <= opts.ttl,
            "Patroni needs loop_wait + 2 * retry_timeout <= ttl: {opts:?}"
        );
        assert!(
            Path::new(PATRONI).exists(),
            "{PATRONI} not found: install Debian's patroni (scripts/install-deps)"
        );
        assert!(
            procs::on_path(ETCD),
            "{ETCD} not on PATH: install Debian's etcd-server (scripts/install-deps)"
        );
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-ha-")
            .tempdir_in(temp_root())
            .expect("create temp dir for the HA cluster");
        let base = dir.path();
        for sub in ["conf", "data", "run", "log"] {
            std::fs::create_dir_all(base.join(sub)).expect("create cluster dir");
        }
        // A rendered cluster's members are named as its StatefulSet's pods.
        let names: Vec<String> = match &opts.rendered {
            Some(r) => (0..opts.members)
                .map(|i| format!("{}-{i}", r.name))
                .collect(),
            None => (1..=opts.members).map(|i| format!("pg{i}")).collect(),
        };
        let lab = opts.netns.then(|| {
            let mut hosts: Vec<&str> = names.iter().map(String::as_str).collect();
            hosts.push("etcd");
            crate::netns::Lab::new(&hosts)
        });
        let host_of = |name: &str| {
            lab.as_ref()
                .map_or("127.0.0.1".to_string(), |l| l.host(name).addr.to_string())
        };
        // A rendered cluster on hosts of its own listens where a pod does.
        let pod_ports = opts.rendered.is_some() && opts.netns;
        let members: Vec<Member> = names
            .iter()
            .map(|name| Member {
                info: MemberInfo {
                    name: name.clone(),
                    host: host_of(name),
                    pg_port: if pod_ports { 5432 } else { free_port() },
                    rest_port: if pod_ports { 8008 } else { free_port() },
                },
                patroni: Mutex::new(None),
            })
            .collect();
        for m in &members {
            std::fs::create_dir_all(base.join("log").join(&m.info.name)).expect("create log dir");
            // Rendered members' sockets: one directory each (the ports
            // may be the same on hosts of their own).
            std::fs::create_dir_all(base.join("run").join(&m.info.name)).expect("create run dir");
        }
        let script = base.join("conf").join("post_bootstrap.sh");
        std::fs::write(&script, config::post_bootstrap_sh(&pg_bin("psql")))
            .expect("write post_bootstrap.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod post_bootstrap.sh");
        if let Some(r) = &opts.rendered {
            rendered::write_files(base, r);
            let sites: Vec<(&str, u16)> = members
                .iter()
                .map(|m| (m.info.name.as_str(), m.info.pg_port))
                .collect();
            pgbackrest::write_confs(base, r, &sites);
        }
        give_to_server_user(base);

        let etcd_host: std::net::IpAddr = host_of("etcd").parse().expect("an IP address");
        let mut cluster = HaCluster {
            scope: opts
                .rendered
                .as_ref()
                .map_or_else(unique_scope, |r| r.name.clone()),
            etcd_addr: std::net::SocketAddr::new(etcd_host, 0),
            etcd: Mutex::new(None),
            members,
            synchronous_mode: opts.synchronous_mode,
            patroni_env: opts.rendered.as_ref().map_or_else(Vec::new, |r| {
                let mut env = vec![
                    (
                        "PATRONI_SUPERUSER_PASSWORD".into(),
                        r.superuser_password.clone(),
                    ),
                    (
                        "PATRONI_REPLICATION_PASSWORD".into(),
                        r.replication_password.clone(),
                    ),
                ];
                env.extend(r.secret_env.iter().cloned());
                env
            }),
            reaper: Some(procs::spawn_reaper(base)),
            dir,
            lab,
        };
        let etcd_ns = cluster.netns_of("etcd");
        let (etcd, etcd_addr) = procs::start_etcd(
            cluster.base(),
            &cluster.scope,
            etcd_host,
            etcd_ns.as_deref(),
        );
        cluster.etcd_addr = etcd_addr;
        *lock(&cluster.etcd) = Some(etcd);
        let bin_dir = pg_bin("postgres")
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for m in &cluster.members {
            let yaml = match &opts.rendered {
                Some(r) => rendered::local_yaml(r, &m.info, cluster.etcd_addr, cluster.base()),
                None => config::member_yaml(&config::MemberConfig {
                    scope: &cluster.scope,
                    member: &m.info,
                    etcd: cluster.etcd_addr,
                    base: cluster.base(),
                    bin_dir: &bin_dir,
                    opts: &opts,
                }),
            };
            std::fs::write(cluster.conf_path(&m.info.name), yaml).expect("write member YAML");
        }
        give_to_server_user(&cluster.base().join("conf"));
        for m in &cluster.members {
            let ns = cluster.netns_of(&m.info.name);
            *lock(&m.patroni) = Some(procs::spawn_patroni(
                cluster.base(),
                &m.info.name,
                ns.as_deref(),
                &cluster.member_env(&m.info.name),
            ));
        }
        if let Some(r) = &opts.rendered {
            cluster.make_app_user(r, START_LIMIT.saturating_sub(started.elapsed()));
        }
        cluster.wait_ready(START_LIMIT.saturating_sub(started.elapsed()));
        cluster
    }

    /// The Patroni scope (cluster name in etcd), unique per cluster.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.iter().map(|m| m.info.clone()).collect()
    }

    /// `http://HOST:PORT` of each member's REST API, in member order.
    pub fn rest_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.info.rest()))
            .collect()
    }

    /// PostgreSQL address of each member, in member order.
    pub fn pg_addrs(&self) -> Vec<(String, u16)> {
        self.members
            .iter()
            .map(|m| (m.info.host.clone(), m.info.pg_port))
            .collect()
    }

    /// etcd's client URL.
    pub fn etcd_url(&self) -> String {
        format!("http://{}", self.etcd_addr)
    }

    /// The hosts, with `netns`: for cutting one off.
    pub fn lab(&self) -> Option<&crate::netns::Lab> {
        self.lab.as_ref()
    }

    /// The namespace a member (or "etcd") runs in, with `netns`.
    fn netns_of(&self, name: &str) -> Option<String> {
        self.lab.as_ref().map(|l| l.host(name).netns.clone())
    }

    /// `GET /cluster` from the first member that answers.
    pub fn cluster_view(&self) -> Option<Vec<MemberStatus>> {
        self.members
            .iter()
            .find_map(|m| status::cluster(m.info.rest()))
    }

    /// The member `GET /cluster` names `role: leader`. That is the DCS view:
    /// it does not mean the leader accepts writes yet.
    pub fn leader(&self) -> Option<String> {
        self.cluster_view()?
            .into_iter()
            .find(|m| m.role == "leader")
            .map(|m| m.name)
    }

    /// The live postmaster pid of member `name`, if any.
    pub fn postmaster_pid(&self, name: &str) -> Option<u32> {
        procs::postmaster_pid(&self.data_dir(name))
    }

    /// The pid of member `name`'s Patroni, if the harness has it running.
    pub fn patroni_pid(&self, name: &str) -> Option<u32> {
        lock(&self.member(name).patroni).as_ref().map(Child::id)
    }

    /// Wait until etcd is healthy, every running member reports state
    /// `running`, exactly one answers `/primary` (and `/cluster` agrees), every
    /// other one answers `/replica` and streams from the leader, and an
    /// INSERT as [`HA_APP_USER`] succeeds on the leader. Members the test
    /// killed or stopped are not waited for. Returns the leader.
    pub fn wait_ready(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            self.check_patroni_alive();
            let up: Vec<&MemberInfo> = self
                .members
                .iter()
                .filter(|m| lock(&m.patroni).is_some())
                .map(|m| &m.info)
                .collect();
            let why = match status::ready_check(self.etcd_addr, &up, self.synchronous_mode) {
                Ok(leader) => return leader,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                panic!(
                    "HA cluster {} not ready within {limit:?}: {why}\n/cluster: {:?}\n{}",
                    self.scope,
                    self.cluster_view(),
                    self.log_tails(30)
                );
            }
            std::thread::sleep(POLL * 2);
        }
    }

    /// One INSERT into `probe` as [`HA_APP_USER`] over TCP on member `name`;
    /// `Err` carries psql's error (read-only, starting up, refused, ...).
    pub fn probe_write(&self, name: &str) -> Result<(), String> {
        status::probe_write(&self.member(name).info)
    }

    /// Scenario "node death": SIGKILL the leader's Patroni and postmaster.
    /// Returns the killed member; [`HaCluster::restart_member`] brings it back.
    pub fn kill_leader_node(&self) -> String {
        let leader = self.leader().expect("no leader to kill");
        self.kill_member(&leader);
        leader
    }

    /// SIGKILL member `name`'s Patroni, then its postmaster (a stopped
    /// one too); [`HaCluster::restart_member`] brings it back.
    pub fn kill_member(&self, name: &str) {
        let m = self.member(name);
        let postmaster = self.postmaster_pid(name);
        // Patroni first, or it would restart the postmaster.
        if let Some(mut child) = lock(&m.patroni).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = postmaster {
            procs::signal(pid, "KILL");
            assert!(
                procs::wait_gone(&[pid], PG_STOP_LIMIT),
                "postmaster {pid} of {name} survived SIGKILL"
            );
        }
    }

    /// Start member `name`'s Patroni again after a kill or stop. Does not
    /// wait; follow with [`HaCluster::wait_ready`]. Call it from the thread
    /// that started the cluster, like [`HaCluster::start`].
    pub fn restart_member(&self, name: &str) {
        let m = self.member(name);
        assert!(lock(&m.patroni).is_none(), "{name}'s Patroni is running");
        if let Some(pid) = self.postmaster_pid(name) {
            procs::stop_postmasters(&[pid], PG_STOP_LIMIT);
        }
        let ns = self.netns_of(name);
        *lock(&m.patroni) = Some(procs::spawn_patroni(
            self.base(),
            name,
            ns.as_deref(),
            &self.member_env(name),
        ));
    }

    /// Member `name`'s Patroni and PostgreSQL output so far.
    pub fn member_log(&self, name: &str) -> String {
        read_lossy(&self.base().join("log").join(name).join("postgres.log"))
    }

    /// Remove stopped member `name`'s data directory, as a lost volume
    /// would: on restart Patroni makes it a replica again from the leader.
    pub fn remove_data(&self, name: &str) {
        assert!(lock(&self.member(name).patroni).is_none(), "{name} runs");
        std::fs::remove_dir_all(self.data_dir(name)).expect("remove the member's data");
    }

    /// SIGTERM member `name`'s Patroni, which stops its PostgreSQL (and
    /// releases the leader key if it holds it), and wait for both to exit.
    pub fn stop_member(&self, name: &str) {
        procs::stop_patronis(&[self.member(name)]);
        if let Some(pid) = self.postmaster_pid(name) {
            procs::stop_postmasters(&[pid], PG_STOP_LIMIT);
        }
    }

    /// `POST /switchover` to the leader, to `candidate` or (`None`) whichever
    /// replica Patroni picks. Returns the new leader once `/cluster` shows it
    /// running; wait with [`HaCluster::wait_ready`] before relying on replicas.
    pub fn switchover(&self, candidate: Option<&str>) -> String {
        let leader = self.leader().expect("no leader to switch over from");
        let mut body = serde_json::json!({ "leader": leader });
        if let Some(c) = candidate {
            body["candidate"] = Value::from(c);
        }
        let rest = self.member(&leader).info.rest();
        let r = http::post_json_at(
            rest,
            "/switchover",
            &body.to_string(),
            SWITCHOVER_HTTP_LIMIT,
        )
        .unwrap_or_else(|e| panic!("POST /switchover {body} to {leader}: {e}"));
        assert_eq!(
            r.status, 200,
            "POST /switchover {body} to {leader}: {}",
            r.body
        );
        let new = self.wait_for_new_leader(&leader, Duration::from_secs(30));
        if let Some(c) = candidate {
            assert_eq!(new, c, "switchover went to another member");
        }
        new
    }

    /// Wait until `/cluster` names a running leader other than `old`.
    pub fn wait_for_new_leader(&self, old: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let view = self.cluster_view();
            let leader = view.iter().flatten().find(|m| m.role == "leader");
            if let Some(m) = leader.filter(|m| m.name != old && m.state == "running") {
                return m.name.clone();
            }
            if Instant::now() >= deadline {
                panic!("no new leader (old: {old}) within {limit:?}; /cluster: {view:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Recent lines of every log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = format!(
            "---- HA cluster {} in {} ----\n---- etcd log ----\n{}\n",
            self.scope,
            self.base().display(),
            tail(&read_lossy(&self.base().join("log/etcd.log")), lines)
        );
        for m in &self.members {
            let dir = self.base().join("log").join(&m.info.name);
            for (what, file) in [("Patroni", "patroni.log"), ("postgres", "postgres.log")] {
                out.push_str(&format!(
                    "---- {} {what} log ----\n{}\n",
                    m.info.name,
                    tail(&read_lossy(&dir.join(file)), lines)
                ));
            }
        }
        out
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn conf_path(&self, name: &str) -> PathBuf {
        self.base().join("conf").join(format!("{name}.yml"))
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.base().join("data").join(name)
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.info.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// A Patroni that exited by itself (bad config, port taken) would
    /// otherwise show only as a readiness timeout.
    fn check_patroni_alive(&self) {
        for m in &self.members {
            if let Some(child) = lock(&m.patroni).as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("Patroni {} exited with {status}", m.info.name);
                }
            }
        }
    }
}

impl std::fmt::Debug for HaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaCluster")
            .field("scope", &self.scope)
            .field("etcd", &self.etcd_addr)
            .field("members", &self.members())
            .field("dir", &self.base())
            .finish()
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(30));
        }
        // Patroni first: a running Patroni restarts a postmaster stopped
        // under it. All at once: stopping replicas before the leader (so it
        // finds no one to hand over to) measured twice as slow, ~4 s.
        let all: Vec<&Member> = self.members.iter().collect();
        procs::stop_patronis(&all);
        let orphans: Vec<u32> = self
            .members
            .iter()
            .filter_map(|m| self.postmaster_pid(&m.info.name))
            .collect();
        procs::stop_postmasters(&orphans, PG_STOP_LIMIT);
        if let Some(mut etcd) = lock(&self.etcd).take() {
            procs::signal(etcd.id(), "TERM");
            wait_bounded(&mut etcd, Duration::from_secs(10));
        }
        if let Some(mut reaper) = self.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
    }
}

fn unique_scope() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "pgwolf-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where the cluster's temp dir goes: the server user must be able to reach
/// it, so a `TMPDIR` under a private dir (like `/root`) falls back to `/tmp`.
fn temp_root() -> PathBuf {
    let tmp = std::env::temp_dir();
    let reachable = tmp
        .ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|md| md.permissions().mode() & 0o001 != 0));
    if running_as_root() && !reachable {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}
