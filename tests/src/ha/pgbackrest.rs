//! pgBackRest beside a rendered cluster's members: each member gets the
//! controller's `pgbackrest.conf` with the pod's paths moved where the
//! harness keeps them (the same moves as `patroni.yml`'s, plus the
//! repositories' volumes under `pgbackrest/` and pgBackRest's scratch
//! directory per member), and its Patroni, so its PostgreSQL's
//! archive_command and restore_command, finds it through
//! `PGBACKREST_CONFIG`, as a pod finds it at /etc/pgbackrest.

use super::rendered::{move_paths, pod_paths, Rendered};
use super::HaCluster;
use crate::tools::{child_command, give_to_server_user, output_text, run_bounded};
use pgwolf_controller::resources::pgbackrest::{CA_MOUNT, REPO_MOUNT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// pgBackRest's scratch directory in the pod (its lock and log paths).
const POD_SCRATCH: &str = "/tmp/pgbackrest";

/// How long one pgBackRest command may run (a backup of the test's few
/// megabytes takes seconds).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// Each `key=value` line's value moved by `paths`, and `pg1-port` set to
/// `port` (pgBackRest's options are one per line; sections and comments
/// stay as they are).
pub fn localize_ini(text: &str, paths: &[(&str, PathBuf)], port: u16) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pg1-port", _)) => out.push_str(&format!("pg1-port={port}\n")),
            Some((key, value)) if !line.starts_with('[') && !line.starts_with('#') => {
                let mut v = Value::String(value.to_string());
                move_paths(&mut v, paths);
                out.push_str(&format!("{key}={}\n", v.as_str().unwrap_or(value)));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Where a member's pgBackRest paths are here.
fn member_paths(base: &Path, name: &str) -> Vec<(&'static str, PathBuf)> {
    let mut paths = pod_paths(base, name);
    paths.push((REPO_MOUNT, base.join("pgbackrest")));
    // Where write_files puts a Secret's file mounted at that path.
    paths.push((
        CA_MOUNT,
        base.join("pod").join(CA_MOUNT.trim_start_matches('/')),
    ));
    paths.push((
        POD_SCRATCH,
        base.join("run").join(format!("pgbackrest-{name}")),
    ));
    paths
}

/// Writes every member's local `pgbackrest.conf` and creates the
/// repositories' directory; nothing without `spec.backups`.
pub(super) fn write_confs(base: &Path, r: &Rendered, members: &[(&str, u16)]) {
    let Some(conf) = &r.pgbackrest_conf else {
        return;
    };
    std::fs::create_dir_all(base.join("pgbackrest")).expect("create the repositories' dir");
    for &(name, port) in members {
        let local = localize_ini(conf, &member_paths(base, name), port);
        std::fs::write(conf_path(base, name), local).expect("write pgbackrest.conf");
        let scratch = base.join("run").join(format!("pgbackrest-{name}"));
        std::fs::create_dir_all(scratch).expect("create pgBackRest's scratch dir");
    }
}

fn conf_path(base: &Path, name: &str) -> PathBuf {
    base.join("conf").join(format!("pgbackrest.{name}.conf"))
}

impl HaCluster {
    /// Member `name`'s Patroni environment: the cluster's, and where its
    /// pgbackrest.conf is when it has one.
    pub(super) fn member_env(&self, name: &str) -> Vec<(String, String)> {
        let mut env = self.patroni_env.clone();
        let conf = conf_path(self.base(), name);
        if conf.exists() {
            env.push((
                "PGBACKREST_CONFIG".into(),
                conf.to_string_lossy().into_owned(),
            ));
        }
        env
    }

    /// The local pgbackrest.conf of member `name`.
    pub fn pgbackrest_conf(&self, name: &str) -> PathBuf {
        conf_path(self.base(), name)
    }

    /// Runs `pgbackrest --stanza=<scope> args...` as the server's user
    /// with member `name`'s configuration, as it would run in that pod;
    /// its output, or its output as the error when it fails.
    pub fn pgbackrest(&self, name: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = child_command(Path::new("/usr/bin/pgbackrest"), true);
        cmd.arg(format!("--stanza={}", self.scope))
            .args(args)
            .envs(self.member_env(name))
            .env("HOME", self.base().join("run"))
            .current_dir(self.base());
        let out = run_bounded(&mut cmd, COMMAND_LIMIT);
        let text = output_text(&out);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("pgbackrest {args:?} on {name}: {text}"))
        }
    }

    /// A directory under the cluster's for a test's own server (a
    /// restore's target), owned by the server's user.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        let dir = self.base().join("scratch").join(name);
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        give_to_server_user(&self.base().join("scratch"));
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_under_pod_paths_move_and_nothing_else() {
        let text = "[global]\nrepo1-path=/pgbackrest/repo1\nlog-path=/tmp/pgbackrest/log\n\
                    start-fast=y\n\n[main]\npg1-path=/home/postgres/pgdata/pgroot/data\n\
                    pg1-port=5432\n";
        let base = Path::new("/x");
        let local = localize_ini(text, &member_paths(base, "main-0"), 15432);
        assert_eq!(
            local,
            "[global]\nrepo1-path=/x/pgbackrest/repo1\nlog-path=/x/run/pgbackrest-main-0/log\n\
             start-fast=y\n\n[main]\npg1-path=/x/data/main-0\npg1-port=15432\n"
        );
    }
}
