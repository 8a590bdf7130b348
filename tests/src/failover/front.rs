//! The pooler in front of the cluster: pgwolf (patroni or static
//! provider) or PgBouncer re-pointed by a script.

use crate::ha::{HaCluster, HaOptions, MemberInfo, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use crate::pgbouncer::PgBouncer;
use crate::{connect, userlist, Pgwolf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
