//! `[clusters.NAME]`: a set of PostgreSQL members whose primary pgwolf
//! follows, and how it learns who is primary.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a cluster's topology comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `hosts`, each probed with `SELECT pg_is_in_recovery()`.
    Static,
    /// Patroni's REST API (`GET /cluster`) at any of `patroni_urls`.
    Patroni,
    /// The Kubernetes objects Patroni's Kubernetes DCS maintains: the
    /// leader Endpoints and the member Pods' role label, watched.
    Kubernetes,
}

/// Which members a database's connections go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetRole {
    #[default]
    Primary,
    /// Healthy replicas within `max_replica_lag`, round robin.
    Replica,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub provider: Provider,
    /// `static`: the members, as `host:port`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `patroni`: members' REST API base URLs, e.g. `http://10.0.0.1:8008`.
    #[serde(default)]
    pub patroni_urls: Vec<String>,
    #[serde(default = "poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// One REST request or SQL probe must answer within this.
    #[serde(default = "probe_timeout", with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// A transaction waits this long for a primary to be known; 0 = fail at once.
    #[serde(default = "failover_wait_timeout", with = "humantime_serde")]
    pub failover_wait_timeout: Duration,
    /// Replicas lagging more bytes than this get no reads (where lag is known).
    #[serde(default = "max_replica_lag")]
    pub max_replica_lag: u64,
    /// Reads go to the primary when no replica qualifies.
    #[serde(default = "replica_fallback")]
    pub replica_fallback: bool,
    /// Each database on this cluster also answers as `<name><suffix>`,
    /// routed to replicas; "" for none.
    #[serde(default = "read_only_suffix")]
    pub read_only_suffix: String,
    /// `static`: the probe's login (password from here or the auth file).
    pub probe_user: Option<String>,
    pub probe_password: Option<String>,
    #[serde(default = "probe_dbname")]
    pub probe_dbname: String,
    /// `kubernetes`: the namespace; default the kubeconfig's (or the pod's).
    pub namespace: Option<String>,
    /// `kubernetes`: the Endpoints whose address is the leader (Patroni's
    /// scope); default the cluster's name.
    pub endpoints: Option<String>,
    /// `kubernetes`: label selector of the member Pods; default
    /// `cluster-name=<endpoints>`.
    pub pod_selector: Option<String>,
    /// `kubernetes`: the Pod label Patroni sets to the member's role
    /// (`role`; Spilo images use `spilo-role`).
    #[serde(default = "role_label")]
    pub role_label: String,
    /// `kubernetes`: PostgreSQL's port on the members, where the Endpoints
    /// does not name one.
    #[serde(default = "pg_port")]
    pub port: u16,
    /// `kubernetes`: a kubeconfig file; default in-cluster config, then
    /// `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
}

fn poll_interval() -> Duration {
    Duration::from_millis(500)
}
fn probe_timeout() -> Duration {
    Duration::from_secs(2)
}
fn failover_wait_timeout() -> Duration {
    Duration::from_secs(30)
}
fn max_replica_lag() -> u64 {
    16 << 20
}
fn replica_fallback() -> bool {
    true
}
fn read_only_suffix() -> String {
    "_ro".to_string()
}
fn role_label() -> String {
    "role".to_string()
}
fn pg_port() -> u16 {
    5432
}
fn probe_dbname() -> String {
    "postgres".to_string()
}

/// `host:port` or `[v6]:port`; None when it is neither.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(',')).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::from_toml_str;
    use crate::config::Config;
    use std::path::Path;

    fn check(toml: &str) -> Result<Config, String> {
        let cfg = from_toml_str(
            &format!("auth_type = \"trust\"\n{toml}"),
            Path::new("t.toml"),
        )
        .map_err(|e| e.to_string())?;
        super::super::validate::validate(&cfg).map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn a_patroni_cluster_with_defaults_and_its_read_only_alias() {
        let cfg = check(
            "[clusters.main]\nprovider = \"patroni\"\npatroni_urls = [\"http://10.0.0.1:8008\"]\n\
             [databases.app]\ncluster = \"main\"\n",
        )
        .unwrap();
        let c = &cfg.clusters["main"];
        assert_eq!(c.poll_interval, Duration::from_millis(500));
        assert_eq!(c.failover_wait_timeout, Duration::from_secs(30));
        assert_eq!(c.read_only_suffix, "_ro");
        let app = cfg.resolve_database("app").unwrap();
        assert_eq!(app.role, None);
        let ro = cfg.resolve_database("app_ro").unwrap();
        assert_eq!(ro.role, Some(TargetRole::Replica));
        assert_eq!(ro.dbname.as_deref(), Some("app"), "the server's database");
        assert!(cfg.resolve_database("other_ro").is_none());
    }

    #[test]
    fn bad_clusters_name_the_key() {
        let cases = [
            ("[clusters.c]\nprovider = \"patroni\"\n", "clusters.c.patroni_urls"),
            (
                "[clusters.c]\nprovider = \"patroni\"\npatroni_urls = [\"https://h:1\"]\n",
                "clusters.c.patroni_urls",
            ),
            ("[clusters.c]\nprovider = \"static\"\nprobe_user = \"u\"\n", "clusters.c.hosts"),
            (
                "[clusters.c]\nprovider = \"static\"\nhosts = [\"h\"]\nprobe_user = \"u\"\n",
                "clusters.c.hosts",
            ),
            ("[clusters.c]\nprovider = \"static\"\nhosts = [\"h:1\"]\n", "clusters.c.probe_user"),
            (
                "[clusters.c]\nprovider = \"static\"\nhosts = [\"h:1\"]\nprobe_user = \"u\"\npoll_interval = \"0s\"\n",
                "clusters.c.poll_interval",
            ),
            ("[databases.a]\ncluster = \"nope\"\n", "databases.a.cluster"),
            ("[databases.a]\nrole = \"replica\"\n", "databases.a.role"),
        ];
        for (toml, key) in cases {
            let err = check(toml).unwrap_err();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let err = check("[clusters.c]\nprovider = \"etcd\"\n").unwrap_err();
        assert!(err.contains("unknown variant `etcd`"), "{err}");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("10.0.0.1:5432"),
            Some(("10.0.0.1".into(), 5432))
        );
        assert_eq!(split_host_port("[::1]:5433"), Some(("::1".into(), 5433)));
        assert_eq!(
            split_host_port("db.local:6000"),
            Some(("db.local".into(), 6000))
        );
        for bad in ["db", "db:", ":5432", "db:0", "db:x", "a,b:1"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }
}
