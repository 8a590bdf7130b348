//! The kubernetes provider against a small in-test API server speaking the
//! list/watch wire format (JSON lists with resourceVersion, line-delimited
//! watch events, bookmarks), through a real kube-rs client: a leader
//! change, and a leader change while the watch streams are down.

use super::*;
use crate::config::Provider;
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// Every change ever made, so a watch from resourceVersion N replays what
/// came after N, as the API server does.
struct State {
    rv: u64,
    endpoints: Value,
    pods: BTreeMap<String, Value>,
    log: Vec<(u64, &'static str, &'static str, Value)>,
}

struct FakeApi {
    state: Mutex<State>,
    events: broadcast::Sender<(u64, &'static str, &'static str, Value)>,
    /// Closes every open watch stream.
    drop_watches: broadcast::Sender<()>,
    watches: std::sync::atomic::AtomicUsize,
    /// While set, every request gets 503: the API server is unreachable.
    down: std::sync::atomic::AtomicBool,
}

fn endpoints(ip: Option<&str>, leader: &str) -> Value {
    let subsets = match ip {
        Some(ip) => {
            json!([{ "addresses": [{ "ip": ip }], "ports": [{ "name": "postgresql", "port": 5432 }] }])
        }
        None => json!([]),
    };
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "main", "namespace": "db", "annotations": { "leader": leader } },
        "subsets": subsets
    })
}

fn pod(name: &str, ip: &str, role: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "db", "labels": { "cluster-name": "main", "role": role } },
        "status": { "phase": "Running", "podIP": ip, "conditions": [{ "type": "Ready", "status": "True" }] }
    })
}

impl FakeApi {
    fn new() -> Arc<Self> {
        let mut pods = BTreeMap::new();
        pods.insert("pg-0".to_string(), pod("pg-0", "10.0.0.1", "master"));
        pods.insert("pg-1".to_string(), pod("pg-1", "10.0.0.2", "replica"));
        Arc::new(FakeApi {
            state: Mutex::new(State {
                rv: 10,
                endpoints: endpoints(Some("10.0.0.1"), "pg-0"),
                pods,
                log: Vec::new(),
            }),
            events: broadcast::channel(64).0,
            drop_watches: broadcast::channel(4).0,
            watches: Default::default(),
            down: Default::default(),
        })
    }

    fn change(&self, kind: &'static str, mut obj: Value) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        if kind == "Endpoints" {
            s.endpoints = obj.clone();
        } else {
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            s.pods.insert(name, obj.clone());
        }
        s.log.push((rv, kind, "MODIFIED", obj.clone()));
        let _ = self.events.send((rv, kind, "MODIFIED", obj));
    }

    async fn serve(self: Arc<Self>, l: TcpListener) {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(self.clone().connection(s));
        }
    }

    async fn connection(self: Arc<Self>, s: TcpStream) {
        let mut r = BufReader::new(s);
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let mut s = r.into_inner();
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = s
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .await;
            return;
        }
        let kind = if target.contains("/endpoints") {
            "Endpoints"
        } else {
            "Pod"
        };
        let query = target.split_once('?').map(|x| x.1).unwrap_or("");
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        if param("watch").as_deref() != Some("true") {
            let body = {
                let st = self.state.lock().unwrap();
                let items: Vec<Value> = if kind == "Endpoints" {
                    vec![st.endpoints.clone()]
                } else {
                    st.pods.values().cloned().collect()
                };
                json!({ "apiVersion": "v1", "kind": format!("{kind}List"), "metadata": { "resourceVersion": st.rv.to_string() }, "items": items }).to_string()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
            return;
        }
        self.watches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let since: u64 = param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (mut live, backlog, rv) = {
            let st = self.state.lock().unwrap();
            let backlog: Vec<_> = st
                .log
                .iter()
                .filter(|e| e.0 > since && e.1 == kind)
                .cloned()
                .collect();
            (self.events.subscribe(), backlog, st.rv)
        };
        let mut dropped = self.drop_watches.subscribe();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let line = |ty: &str, obj: &Value| format!("{}\n", json!({ "type": ty, "object": obj }));
        for (_, _, ty, obj) in &backlog {
            if s.write_all(line(ty, obj).as_bytes()).await.is_err() {
                return;
            }
        }
        let bookmark = json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": rv.to_string() } });
        let _ = s.write_all(line("BOOKMARK", &bookmark).as_bytes()).await;
        loop {
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok((_, k, ty, obj)) if k == kind => {
                        if s.write_all(line(ty, &obj).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                _ = dropped.recv() => return,
            }
        }
    }
}

fn config(kubeconfig: std::path::PathBuf) -> ClusterConfig {
    let mut c: ClusterConfig =
        toml::from_str("provider = \"kubernetes\"\nnamespace = \"db\"\n").unwrap();
    assert_eq!(c.provider, Provider::Kubernetes);
    c.kubeconfig = Some(kubeconfig);
    c
}

async fn until(
    rx: &mut watch::Receiver<Topology>,
    what: &str,
    f: impl Fn(&Topology) -> bool,
) -> Topology {
    let wait = async {
        loop {
            {
                let t = rx.borrow_and_update();
                if f(&t) {
                    return t.clone();
                }
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", rx.borrow()))
}

fn primary(t: &Topology) -> Option<(&str, &str)> {
    t.primary().map(|m| (m.name.as_str(), m.host.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_leader_endpoints_through_changes_and_dropped_watches() {
    let api = FakeApi::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(api.clone().serve(l));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: u\n  user:\n    token: not-a-secret\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n\
             current-context: c\n"
        ),
    )
    .unwrap();

    let (tx, mut rx) = watch::channel(Topology::default());
    let stop = CancellationToken::new();
    tokio::spawn(run(
        "main".into(),
        config(kubeconfig),
        tx,
        Arc::new(Notify::new()),
        stop.clone(),
    ));

    let t = until(&mut rx, "the first leader and its replica", |t| {
        primary(t) == Some(("pg-0", "10.0.0.1")) && t.replicas(u64::MAX).count() == 1
    })
    .await;
    let replicas: Vec<_> = t.replicas(u64::MAX).map(|m| m.name.as_str()).collect();
    assert_eq!(replicas, ["pg-1"]);

    // Patroni moves the leader: Endpoints first, then the role labels.
    api.change("Endpoints", endpoints(Some("10.0.0.2"), "pg-1"));
    api.change("Pod", pod("pg-1", "10.0.0.2", "master"));
    api.change("Pod", pod("pg-0", "10.0.0.1", "replica"));
    let t = until(&mut rx, "the new leader", |t| {
        primary(t) == Some(("pg-1", "10.0.0.2")) && t.replicas(u64::MAX).any(|m| m.name == "pg-0")
    })
    .await;
    assert_eq!(
        t.members.iter().filter(|m| m.role == Role::Primary).count(),
        1
    );

    // No leader for a moment: no primary, so writes wait.
    api.change("Endpoints", endpoints(None, ""));
    until(&mut rx, "no leader", |t| t.primary().is_none()).await;

    // The streams drop; the leader changes while they are down. The
    // watchers rewatch from their last resourceVersion and catch up.
    api.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = api.drop_watches.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = api.watches.load(std::sync::atomic::Ordering::SeqCst);
    api.change("Endpoints", endpoints(Some("10.0.0.1"), "pg-0"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        primary(&rx.borrow()),
        None,
        "nothing seen while the API is down"
    );
    api.down.store(false, std::sync::atomic::Ordering::SeqCst);
    until(&mut rx, "the leader after the streams dropped", |t| {
        primary(t) == Some(("pg-0", "10.0.0.1"))
    })
    .await;
    assert!(
        api.watches.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the change came through a new watch"
    );
    stop.cancel();
}

#[test]
fn pods_that_are_not_ready_replicas_serve_no_reads() {
    let cfg = config("/nonexistent".into());
    let mut v = View {
        leader: serde_json::from_value(endpoints(Some("10.0.0.1"), "pg-0")).ok(),
        ..View::default()
    };
    let mut starting = pod("pg-2", "10.0.0.3", "replica");
    starting["status"]["conditions"][0]["status"] = "False".into();
    for p in [
        pod("pg-0", "10.0.0.1", "master"),
        pod("pg-1", "10.0.0.2", "replica"),
        starting,
    ] {
        v.pod_event(Event::Apply(serde_json::from_value(p).unwrap()));
    }
    let t = v.topology(&cfg);
    assert_eq!(primary(&t), Some(("pg-0", "10.0.0.1")));
    let replicas: Vec<_> = t.replicas(0).map(|m| m.name.as_str()).collect();
    assert_eq!(replicas, ["pg-1"], "the unready pod is not a replica");
    assert_eq!(t.members.len(), 3, "leader once, then pg-1 and pg-2");
}
