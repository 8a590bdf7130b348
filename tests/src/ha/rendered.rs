//! A cluster as pgwolf-controller renders it: the `patroni.yml` of its
//! `<cluster>-patroni` ConfigMap, the passwords of its Secrets, the
//! certificates it issued. [`localize`] is the one step between that file
//! and a Patroni started here, so a setting Patroni or PostgreSQL refuses
//! fails a test rather than a user's first `kubectl apply`.

use super::{http, MemberInfo, HA_APP_USER, HA_SUPERUSER, POLL};
use pgwolf_controller::api::PostgresCluster;
use pgwolf_controller::resources::{self, patroni_config, pgbackrest, Child};
use pgwolf_controller::secrets::Credentials;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the controller renders for one cluster, as the pods get it.
#[derive(Clone)]
pub struct Rendered {
    /// The cluster's name: Patroni's scope.
    pub name: String,
    /// The ConfigMap's `patroni.yml`, byte for byte.
    pub patroni_yml: String,
    /// The environment a pod gets from Secrets (the rest of `instance_env`
    /// is the pod's name and IP, which [`Site`] carries).
    pub superuser_password: String,
    pub replication_password: String,
    /// Files mounted from Secrets, by their path in the pod: the server
    /// certificate and key, the CA.
    pub files: Vec<(String, Vec<u8>)>,
    /// The ConfigMap's `pgbackrest.conf`, with `spec.backups`.
    pub pgbackrest_conf: Option<String>,
    /// More of the environment a pod gets from Secrets the cluster
    /// references but the controller does not make (an S3 repository's
    /// keys), as `(variable, value)`.
    pub secret_env: Vec<(String, String)>,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rendered({})", self.name)
    }
}

/// The manifest the end-to-end tests render (`main` in namespace `db`):
/// three instances, the harness's fast timing (a lost leader replaced in
/// about 6 s), fsync off (throw-away clusters on two shared cores), the
/// user `alice` with database `shop`, and `extra` merged into the spec.
/// Credentials come from a fixed seed.
pub fn test_cluster(extra: Value) -> (PostgresCluster, Credentials) {
    use rand::SeedableRng;
    let mut spec = json!({
        "instances": 3,
        "patroni": { "ttl": 6, "loopWait": 1, "retryTimeout": 2 },
        "postgresql": { "parameters": { "fsync": "off" } },
        "users": [{ "name": "alice", "databases": ["shop"] }],
    });
    pgwolf_controller::yaml::merge(&mut spec, extra);
    let cluster: PostgresCluster = serde_json::from_value(json!({
        "apiVersion": "pgwolf.io/v1alpha1",
        "kind": "PostgresCluster",
        "metadata": { "name": "main", "namespace": "db" },
        "spec": spec,
    }))
    .expect("a valid PostgresCluster");
    let credentials = resources::credentials(
        &cluster,
        |_| None,
        &mut rand::rngs::StdRng::seed_from_u64(11),
        pgwolf_controller::secrets::tls::today(),
    )
    .expect("credentials");
    (cluster, credentials)
}

/// The text under `key` of the rendered ConfigMap `name`.
pub fn config_map_entry(objects: &[Child], name: &str, key: &str) -> String {
    objects
        .iter()
        .find_map(|o| match o {
            Child::ConfigMap(c) if c.metadata.name.as_deref() == Some(name) => {
                c.data.as_ref()?.get(key).cloned()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rendered ConfigMap {name} with {key}"))
}

/// The bytes under `key` of the rendered Secret `name`.
pub fn secret_entry(objects: &[Child], name: &str, key: &str) -> Vec<u8> {
    objects
        .iter()
        .find_map(|o| match o {
            Child::Secret(s) if s.metadata.name.as_deref() == Some(name) => {
                s.data.as_ref()?.get(key).map(|b| b.0.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rendered Secret {name} with {key}"))
}

impl Rendered {
    /// Renders `cluster` with `credentials` as a reconcile would and picks
    /// out what an instance pod runs from.
    pub fn new(cluster: &PostgresCluster, credentials: &Credentials) -> Rendered {
        let objects = resources::desired(cluster, credentials).expect("render the cluster");
        let name = cluster.metadata.name.clone().expect("a named cluster");
        let patroni_yml = config_map_entry(
            &objects,
            &format!("{name}-patroni"),
            patroni_config::CONFIG_FILE,
        );
        let tls = format!("{name}-tls");
        let key = |k: &str| secret_entry(&objects, &tls, k);
        let files = vec![
            (
                format!("{}/tls.crt", patroni_config::TLS_MOUNT),
                key("tls.crt"),
            ),
            (
                format!("{}/tls.key", patroni_config::TLS_MOUNT),
                key("tls.key"),
            ),
            (
                format!("{}/ca.crt", patroni_config::TLS_CA_MOUNT),
                key("ca.crt"),
            ),
        ];
        let pgbackrest_conf = objects.iter().find_map(|o| match o {
            Child::ConfigMap(c)
                if c.metadata.name.as_deref() == Some(&format!("{name}-pgbackrest")) =>
            {
                c.data.as_ref()?.get(pgbackrest::CONFIG_FILE).cloned()
            }
            _ => None,
        });
        Rendered {
            name,
            pgbackrest_conf,
            secret_env: Vec::new(),
            patroni_yml,
            superuser_password: credentials.superuser.password.clone(),
            replication_password: credentials.replication.password.clone(),
            files,
        }
    }

    /// The CA certificate clients verify the instances against (PEM).
    pub fn ca_pem(&self) -> &[u8] {
        let path = format!("{}/ca.crt", patroni_config::TLS_CA_MOUNT);
        &self
            .files
            .iter()
            .find(|(p, _)| *p == path)
            .expect("ca.crt")
            .1
    }
}

/// Where one member runs here instead of in a pod.
pub struct Site<'a> {
    /// The pod's name (`PATRONI_NAME`).
    pub name: &'a str,
    /// etcd's client addresses (`host:port`): the DCS instead of the
    /// Kubernetes API, which does not exist on the test machines.
    pub etcd: &'a [String],
    /// The member's address (the pod IP) and its two ports.
    pub host: &'a str,
    /// Listen on `host` instead of the pod's `0.0.0.0`: members sharing
    /// a host (loopback, one network namespace each but the test's) would
    /// otherwise collide. A container keeps the pod's.
    pub listen_on_host: bool,
    pub pg_port: u16,
    pub rest_port: u16,
    /// Directories of the pod and where they are here, longest first or
    /// not: every string value under one of them moves to the other.
    pub paths: &'a [(&'a str, PathBuf)],
}

/// Turns the controller's `patroni.yml` into the one a member runs here.
/// Changed, and nothing else: the DCS (`kubernetes` becomes `etcd3`); the
/// member's name and addresses, which a pod gets from its environment;
/// with [`Site::listen_on_host`], the listen addresses; paths, by
/// [`Site::paths`]. Patroni reads JSON as YAML, so
/// the output is JSON.
pub fn localize(patroni_yml: &str, site: &Site) -> String {
    let mut config: Value = serde_saphyr::from_str(patroni_yml).expect("patroni.yml parses");
    let root = config.as_object_mut().expect("patroni.yml is a mapping");
    assert!(
        root.remove("kubernetes").is_some(),
        "the rendered patroni.yml has no kubernetes section"
    );
    root.insert(
        "etcd3".into(),
        json!({ "hosts": site.etcd, "protocol": "http" }),
    );
    root.insert("name".into(), json!(site.name));
    let rest = format!("{}:{}", site.host, site.rest_port);
    let pg = format!("{}:{}", site.host, site.pg_port);
    config["restapi"]["connect_address"] = json!(rest);
    config["postgresql"]["connect_address"] = json!(pg);
    if site.listen_on_host {
        config["restapi"]["listen"] = json!(rest);
        config["postgresql"]["listen"] = json!(pg);
    }
    move_paths(&mut config, site.paths);
    serde_json::to_string_pretty(&config).expect("JSON")
}

pub(super) fn move_paths(v: &mut Value, paths: &[(&str, PathBuf)]) {
    match v {
        Value::String(s) => {
            let best = paths
                .iter()
                .filter(|(from, _)| {
                    s.strip_prefix(from)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
                .max_by_key(|(from, _)| from.len());
            if let Some((from, to)) = best {
                *s = format!("{}{}", to.display(), &s[from.len()..]);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| move_paths(i, paths)),
        Value::Object(map) => map.values_mut().for_each(|i| move_paths(i, paths)),
        _ => {}
    }
}

/// The pod's directories under `base`: certificates in `pod/`, data,
/// sockets and pgpass where the harness keeps them for every cluster.
pub(super) fn pod_paths(base: &Path, name: &str) -> Vec<(&'static str, PathBuf)> {
    use pgwolf_controller::resources::patroni_config as pc;
    vec![
        (pc::DATA_DIR, base.join("data").join(name)),
        (pc::PGPASS, base.join("run").join(format!("pgpass.{name}"))),
        (pc::SOCKET_DIR, base.join("run").join(name)),
        (pc::TLS_MOUNT, base.join("pod/tls")),
        (pc::TLS_CA_MOUNT, base.join("pod/tlsca")),
        // The instance image's callback, from the tree the image is built from.
        (
            pgbackrest::CALLBACK,
            crate::tools::workspace_dir().join("deploy/images/instance/callback.sh"),
        ),
    ]
}

pub(super) fn local_yaml(
    r: &Rendered,
    m: &MemberInfo,
    etcd: std::net::SocketAddr,
    base: &Path,
) -> String {
    localize(
        &r.patroni_yml,
        &Site {
            name: &m.name,
            etcd: &[etcd.to_string()],
            host: &m.host,
            pg_port: m.pg_port,
            rest_port: m.rest_port,
            listen_on_host: true,
            paths: &pod_paths(base, &m.name),
        },
    )
}

/// The Secrets' files where [`pod_paths`] puts them (the harness); the key readable by
/// its owner only, as PostgreSQL demands of a key it owns.
pub(super) fn write_files(base: &Path, r: &Rendered) {
    for (pod_path, bytes) in &r.files {
        let path = base.join("pod").join(pod_path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))
            .expect("create pod dir");
        std::fs::write(&path, bytes).expect("write a Secret's file");
        let mode = if pod_path.ends_with(".key") {
            0o600
        } else {
            0o644
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod a Secret's file");
    }
}

impl super::HaCluster {
    /// A rendered cluster has no post-bootstrap script: once a leader
    /// takes writes, run the harness's one as the superuser, over TLS as
    /// anything from outside a pod must.
    pub(super) fn make_app_user(&self, r: &Rendered, limit: Duration) {
        let deadline = Instant::now() + limit;
        let script = self.base().join("conf").join("post_bootstrap.sh");
        loop {
            self.check_patroni_alive();
            let leader = self.members.iter().find(|m| {
                http::get_at(m.info.rest(), "/primary", Duration::from_secs(2))
                    .is_ok_and(|r| r.status == 200)
            });
            let conn = leader.map(|m| {
                format!(
                    "host={} port={} user={HA_SUPERUSER} dbname=postgres sslmode=require",
                    m.info.host, m.info.pg_port
                )
            });
            let tried = conn.as_ref().map(|conn| {
                let mut cmd = std::process::Command::new(&script);
                cmd.arg(conn).env("PGPASSWORD", &r.superuser_password);
                crate::tools::run_bounded(&mut cmd, Duration::from_secs(30))
            });
            match tried {
                Some(out) if out.status.success() => {
                    if r.pgbackrest_conf.is_some() {
                        os_user_role(conn.as_deref().unwrap_or_default(), r);
                    }
                    return;
                }
                Some(out) if Instant::now() >= deadline => panic!(
                    "creating {HA_APP_USER} on the rendered cluster failed: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log_tails(30)
                ),
                None if Instant::now() >= deadline => panic!(
                    "no leader of the rendered cluster within {limit:?}\n{}",
                    self.log_tails(30)
                ),
                _ => std::thread::sleep(POLL * 5),
            }
        }
    }
}

/// In a pod pgBackRest runs as the OS user `postgres`, whose role is the
/// superuser (peer authentication on the socket); here the servers run as
/// another OS user, which gets a superuser role of its own name.
fn os_user_role(conn: &str, r: &Rendered) {
    let user = if crate::tools::running_as_root() {
        crate::tools::SERVER_USER.to_string()
    } else {
        std::env::var("USER").expect("USER names the OS user")
    };
    let mut cmd = std::process::Command::new(crate::tools::pg_bin("psql"));
    cmd.args(["-XAtq", "-v", "ON_ERROR_STOP=1", conn, "-c"])
        .arg(format!("CREATE ROLE \"{user}\" SUPERUSER LOGIN"))
        .env("PGPASSWORD", &r.superuser_password);
    let out = crate::tools::run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "creating the role {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dcs_addresses_and_paths_change() {
        let yml = "\
scope: main
kubernetes:
  use_endpoints: true
restapi:
  listen: 0.0.0.0:8008
postgresql:
  listen: 0.0.0.0:5432
  data_dir: /home/postgres/pgdata/pgroot/data
  pgpass: /tmp/pgpass
  parameters:
    ssl_cert_file: /tls/tls.crt
    ssl_ca_file: /tlsca/ca.crt
    work_mem: 8MB
";
        let paths = [
            (
                "/home/postgres/pgdata/pgroot/data",
                PathBuf::from("/x/data/pg1"),
            ),
            ("/tls", PathBuf::from("/x/pod/tls")),
            ("/tmp/pgpass", PathBuf::from("/x/run/pgpass.pg1")),
        ];
        let out = localize(
            yml,
            &Site {
                name: "pg1",
                etcd: &["127.0.0.1:2379".to_string()],
                host: "10.0.0.2",
                pg_port: 5433,
                rest_port: 8009,
                listen_on_host: true,
                paths: &paths,
            },
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v.get("kubernetes").is_none());
        assert_eq!(v["etcd3"]["hosts"][0], "127.0.0.1:2379");
        assert_eq!(v["name"], "pg1");
        assert_eq!(v["scope"], "main");
        assert_eq!(v["restapi"]["connect_address"], "10.0.0.2:8009");
        assert_eq!(v["postgresql"]["listen"], "10.0.0.2:5433");
        assert_eq!(v["postgresql"]["data_dir"], "/x/data/pg1");
        let p = &v["postgresql"]["parameters"];
        assert_eq!(p["ssl_cert_file"], "/x/pod/tls/tls.crt");
        assert_eq!(
            p["ssl_ca_file"], "/tlsca/ca.crt",
            "/tlsca is not under /tls"
        );
        assert_eq!(p["work_mem"], "8MB");
        assert_eq!(v["postgresql"]["pgpass"], "/x/run/pgpass.pg1");
    }
}
