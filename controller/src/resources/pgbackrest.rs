//! pgBackRest for `spec.backups`: its configuration file (ConfigMap
//! `<cluster>-pgbackrest`, mounted at `/etc/pgbackrest`, where pgBackRest
//! looks by default), the volumes and environment the instance container
//! needs, and what Patroni is told: archive every WAL segment, fetch
//! missing ones from the archive, and seed a new replica from a backup
//! before falling back to a base backup from the primary.
//!
//! Every option is pgBackRest's own (`repoN-*` numbered as `spec.backups`
//! names the repositories); S3 keys come from the environment
//! (`PGBACKREST_REPON_S3_KEY*`, which pgBackRest reads as options), never
//! from the file.

use super::meta::{Owner, POSTGRES_PORT};
use super::patroni_config::{DATA_DIR, SOCKET_DIR};
use crate::api::{BackupsSpec, RepoSpec, RetentionType, UriStyle};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, SecretKeySelector,
    SecretVolumeSource, Volume, VolumeMount, VolumeResourceRequirements,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const CONFIG_DIR: &str = "/etc/pgbackrest";
pub const CONFIG_FILE: &str = "pgbackrest.conf";
/// Volume repositories are mounted at `/pgbackrest/<repo>`.
pub const REPO_MOUNT: &str = "/pgbackrest";
/// An S3 repository's CA, from its `caSecretName`: `/pgbackrest-ca/<repo>/ca.crt`.
pub const CA_MOUNT: &str = "/pgbackrest-ca";
/// Patroni's callback in the instance image (deploy/images/instance/
/// callback.sh): creates the stanza on the primary at each start and
/// promotion, which archive-push needs.
pub const CALLBACK: &str = "/usr/local/bin/instance-callback";
/// The container's only writable place besides the data volume.
const SCRATCH: &str = "/tmp/pgbackrest";

pub fn backups<'a>(owner: &Owner<'a>) -> Option<&'a BackupsSpec> {
    owner.cluster.spec.backups.as_ref()
}

/// The stanza: one per cluster, named as the cluster (Patroni's scope).
pub fn stanza(owner: &Owner) -> String {
    owner.name.clone()
}

pub fn config_map_name(owner: &Owner) -> String {
    owner.child("pgbackrest")
}

pub fn config_map(owner: &Owner, backups: &BackupsSpec) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(config_map_name(owner), owner.labels("postgres")),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            config(owner, backups),
        )])),
        ..Default::default()
    }
}

/// `pgbackrest.conf`. Why the options that are not pgBackRest's defaults:
/// - `log-level-file=off`, lock, log and spool paths under /tmp: the
///   container's root file system is read-only (a restore lists the
///   spool even with asynchronous archiving off); what a command says goes to its caller
///   (PostgreSQL's log for archive-push, the Job's for a backup).
/// - `start-fast`: a backup starts with an immediate checkpoint rather
///   than waiting for a spread one (minutes with the defaults).
/// - `archive-async` off: each segment is acknowledged once it is in
///   every repository, so a lost pod loses no archived WAL.
pub fn config(owner: &Owner, backups: &BackupsSpec) -> String {
    let mut global = vec![
        ("lock-path".to_string(), format!("{SCRATCH}/lock")),
        ("log-path".to_string(), format!("{SCRATCH}/log")),
        ("spool-path".to_string(), format!("{SCRATCH}/spool")),
        ("log-level-file".to_string(), "off".to_string()),
        ("start-fast".to_string(), "y".to_string()),
    ];
    for repo in &backups.repos {
        global.extend(repo_options(owner, repo));
    }
    let instance = vec![
        ("pg1-path".to_string(), DATA_DIR.to_string()),
        ("pg1-port".to_string(), POSTGRES_PORT.to_string()),
        ("pg1-socket-path".to_string(), SOCKET_DIR.to_string()),
    ];
    let mut out = String::new();
    for (section, options) in [("global".to_string(), global), (stanza(owner), instance)] {
        let _ = writeln!(out, "[{section}]");
        for (k, v) in options {
            let _ = writeln!(out, "{k}={v}");
        }
        out.push('\n');
    }
    out
}

fn repo_options(owner: &Owner, repo: &RepoSpec) -> Vec<(String, String)> {
    let r = &repo.name;
    let mut o = Vec::new();
    let mut set = |k: &str, v: String| o.push((format!("{r}-{k}"), v));
    match &repo.s3 {
        Some(s3) => {
            set("type", "s3".into());
            set("path", repo_path(owner, repo));
            set("s3-bucket", s3.bucket.clone());
            // pgBackRest takes the endpoint's port as an option of its own.
            match s3.endpoint.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => {
                    set("s3-endpoint", host.to_string());
                    set("storage-port", port.to_string());
                }
                _ => set("s3-endpoint", s3.endpoint.clone()),
            }
            set("s3-region", s3.region.clone());
            let style = match s3.uri_style {
                UriStyle::Host => "host",
                UriStyle::Path => "path",
            };
            set("s3-uri-style", style.into());
            set(
                "storage-verify-tls",
                if s3.verify_tls { "y" } else { "n" }.into(),
            );
            if s3.ca_secret_name.is_some() {
                set("storage-ca-file", format!("{CA_MOUNT}/{r}/ca.crt"));
            }
            // Small files in bundles: one request for many of a data
            // directory's ~1,000 small files (a 30 MB cluster's full
            // backup to a local S3: 68 s unbundled).
            set("bundle", "y".into());
        }
        None => {
            set("type", "posix".into());
            set("path", repo_path(owner, repo));
        }
    }
    set("retention-full", repo.retention.full.to_string());
    let full_type = match repo.retention.full_type {
        RetentionType::Count => "count",
        RetentionType::Time => "time",
    };
    set("retention-full-type", full_type.into());
    if let Some(diff) = repo.retention.differential {
        set("retention-diff", diff.to_string());
    }
    o
}

/// Where the repository lives: a volume's mount, or a path in the bucket
/// that keeps clusters sharing it apart.
pub fn repo_path(owner: &Owner, repo: &RepoSpec) -> String {
    match (&repo.s3, &repo.path) {
        (None, _) => format!("{REPO_MOUNT}/{}", repo.name),
        (Some(_), Some(path)) => path.clone(),
        (Some(_), None) => format!(
            "{REPO_MOUNT}/{}/{}/{}",
            owner.namespace, owner.name, repo.name
        ),
    }
}

/// The S3 keys as pgBackRest reads them from its environment.
pub fn env(backups: &BackupsSpec) -> Vec<EnvVar> {
    let mut out = Vec::new();
    for repo in &backups.repos {
        let Some(s3) = &repo.s3 else { continue };
        let index = repo.name.trim_start_matches("repo");
        for (var, key) in [("S3_KEY", "key"), ("S3_KEY_SECRET", "keySecret")] {
            out.push(EnvVar {
                name: format!("PGBACKREST_REPO{index}_{var}"),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: s3.credentials_secret.clone(),
                        key: key.into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    out
}

/// The claim of a volume repository, `<cluster>-<repo>`. ReadWriteMany:
/// every instance archives to it and the backup runs beside the primary,
/// wherever that is.
pub fn claims(owner: &Owner, backups: &BackupsSpec) -> Vec<PersistentVolumeClaim> {
    backups
        .repos
        .iter()
        .filter_map(|repo| {
            let volume = repo.volume.as_ref()?;
            Some(PersistentVolumeClaim {
                metadata: owner.meta(owner.child(&repo.name), owner.labels("backup")),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteMany".into()]),
                    storage_class_name: volume.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            volume.size.clone(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect()
}

/// The instance container's volumes and mounts: the config directory,
/// each volume repository's claim and each S3 repository's CA.
pub fn volumes(owner: &Owner, backups: &BackupsSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mount = |name: String, path: String| VolumeMount {
        name,
        mount_path: path,
        read_only: None,
        ..Default::default()
    };
    let mut volumes = vec![Volume {
        name: "pgbackrest".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(owner),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        read_only: Some(true),
        ..mount("pgbackrest".into(), CONFIG_DIR.into())
    }];
    for repo in &backups.repos {
        let name = format!("pgbackrest-{}", repo.name);
        if repo.volume.is_some() {
            volumes.push(Volume {
                name: name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: owner.child(&repo.name),
                    read_only: None,
                }),
                ..Default::default()
            });
            mounts.push(mount(name, format!("{REPO_MOUNT}/{}", repo.name)));
        } else if let Some(ca) = repo.s3.as_ref().and_then(|s| s.ca_secret_name.as_ref()) {
            volumes.push(Volume {
                name: name.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(ca.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                read_only: Some(true),
                ..mount(name, format!("{CA_MOUNT}/{}", repo.name))
            });
        }
    }
    (volumes, mounts)
}

/// What `patroni.yml`'s `postgresql` section gets: WAL archived by
/// pgBackRest, fetched from the archive where streaming cannot serve it,
/// the stanza created by the callback on the primary, and replicas seeded
/// from the newest backup (`--delta` reuses what a
/// rebuilt member's data directory still holds). A replica with no backup
/// to restore falls back to `pg_basebackup` from the primary.
pub fn patroni_postgresql(owner: &Owner) -> Value {
    let stanza = stanza(owner);
    json!({
        "parameters": {
            "archive_mode": "on",
            "archive_command": format!("pgbackrest --stanza={stanza} archive-push \"%p\""),
        },
        "recovery_conf": {
            "restore_command": format!("pgbackrest --stanza={stanza} archive-get %f \"%p\""),
        },
        "callbacks": { "on_start": CALLBACK, "on_role_change": CALLBACK },
        "create_replica_methods": ["pgbackrest", "basebackup"],
        "pgbackrest": {
            "command": format!("pgbackrest --stanza={stanza} --delta restore"),
            "keep_data": true,
            "no_params": true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster;

    fn with_backups(repos: Value) -> crate::api::PostgresCluster {
        let mut c = test_cluster("main");
        c.spec.backups = Some(serde_json::from_value(json!({ "repos": repos })).unwrap());
        c
    }

    #[test]
    fn volume_and_s3_repositories_in_pgbackrest_s_options() {
        let c = with_backups(json!([
            { "name": "repo1", "volume": {} },
            { "name": "repo2", "s3": {
                "endpoint": "minio.storage.svc:9000", "bucket": "pg", "region": "eu",
                "uriStyle": "path", "credentialsSecret": "s3-keys", "caSecretName": "s3-ca",
              }, "retention": { "full": 7, "fullType": "time", "differential": 3 } },
        ]));
        let owner = Owner::new(&c);
        let conf = config(&owner, c.spec.backups.as_ref().unwrap());
        for line in [
            "[global]",
            "repo1-type=posix",
            "repo1-path=/pgbackrest/repo1",
            "repo1-retention-full=2",
            "repo2-type=s3",
            "repo2-path=/pgbackrest/db/main/repo2",
            "repo2-s3-endpoint=minio.storage.svc",
            "repo2-storage-port=9000",
            "repo2-s3-uri-style=path",
            "repo2-storage-verify-tls=y",
            "repo2-storage-ca-file=/pgbackrest-ca/repo2/ca.crt",
            "repo2-bundle=y",
            "repo2-retention-full=7",
            "repo2-retention-full-type=time",
            "repo2-retention-diff=3",
            "[main]",
            "pg1-path=/home/postgres/pgdata/pgroot/data",
            "pg1-socket-path=/var/run/postgresql",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} in\n{conf}");
        }
        assert!(!conf.contains("s3-key"), "keys only in the environment");
        let env = env(c.spec.backups.as_ref().unwrap());
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["PGBACKREST_REPO2_S3_KEY", "PGBACKREST_REPO2_S3_KEY_SECRET"]
        );
        let claims = claims(&owner, c.spec.backups.as_ref().unwrap());
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("main-repo1"));
    }

    #[test]
    fn patroni_archives_and_seeds_replicas_from_the_repository() {
        let c = with_backups(json!([{ "name": "repo1", "volume": {} }]));
        let p = patroni_postgresql(&Owner::new(&c));
        assert_eq!(p["parameters"]["archive_mode"], "on");
        assert_eq!(
            p["parameters"]["archive_command"],
            "pgbackrest --stanza=main archive-push \"%p\""
        );
        assert_eq!(
            p["create_replica_methods"],
            json!(["pgbackrest", "basebackup"])
        );
    }
}
