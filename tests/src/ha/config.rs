//! The files a cluster runs from: one Patroni YAML per member and the
//! post-bootstrap script that creates the application role and database.

use super::{
    HaOptions, MemberInfo, HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER, HA_SUPERUSER,
    HA_SUPERUSER_PASSWORD, REPLICATION_PASSWORD, REPLICATION_USER,
};
use std::path::Path;

/// What one member's YAML is rendered from.
pub struct MemberConfig<'a> {
    pub scope: &'a str,
    pub member: &'a MemberInfo,
    pub etcd: std::net::SocketAddr,
    pub base: &'a Path,
    pub bin_dir: &'a Path,
    pub opts: &'a HaOptions,
}

/// YAML single-quoted scalar.
fn q(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn p(path: &Path) -> String {
    q(&path.display().to_string())
}

pub fn member_yaml(c: &MemberConfig) -> String {
    let name = &c.member.name;
    let base = c.base;
    let (ttl, loop_wait, retry_timeout) = (c.opts.ttl, c.opts.loop_wait, c.opts.retry_timeout);
    let (synchronous_mode, failsafe_mode) = (c.opts.synchronous_mode, c.opts.failsafe_mode);
    let (rest, pg, etcd) = (c.member.rest_port, c.member.pg_port, c.etcd);
    let host = &c.member.host;
    let log_dir = p(&base.join("log").join(name));
    let data_dir = p(&base.join("data").join(name));
    let pgpass = p(&base.join("run").join(format!("pgpass.{name}")));
    let socket_dir = p(&base.join("run"));
    let post_bootstrap = p(&base.join("conf").join("post_bootstrap.sh"));
    let bin_dir = p(c.bin_dir);
    let scope = q(c.scope);
    let (su, su_pw) = (q(HA_SUPERUSER), q(HA_SUPERUSER_PASSWORD));
    let (repl, repl_pw) = (q(REPLICATION_USER), q(REPLICATION_PASSWORD));
    // Why the non-default values:
    // - checkpoint: fast: the default spread checkpoint makes each replica's
    //   pg_basebackup take ~95 s.
    // - wal_retrieve_retry_interval 1s: a replica's first walreceiver attempt
    //   fails until the leader's HA loop has made its slot; the default 5 s
    //   retry is what dominates replica start and rejoin.
    // - failsafe_mode (unless a test turns it off): a stalled etcd must not
    //   demote a healthy leader.
    // - wal_sender_timeout 10s: a primary demoted while its replicas are
    //   cut off stays "shutting down" until its walsenders give up on them
    //   (60 s by default); the lost-node tests read its data after that.
    // - fsync off: only an OS crash loses data without it, and these clusters
    //   are thrown away; two shared cores make fsyncs slow.
    format!(
        "\
scope: {scope}
namespace: /service/
name: {name}

log:
  level: INFO
  format: '%(asctime)s %(levelname)s: %(message)s'
  dir: {log_dir}

restapi:
  listen: {host}:{rest}
  connect_address: {host}:{rest}

etcd3:
  hosts: {etcd}
  protocol: http

bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry_timeout}
    primary_start_timeout: 300
    failsafe_mode: {failsafe_mode}
    synchronous_mode: {synchronous_mode}
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        password_encryption: scram-sha-256
        wal_level: replica
        hot_standby: 'on'
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        shared_buffers: 32MB
        wal_retrieve_retry_interval: 1s
        wal_sender_timeout: 10s
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - auth-local: scram-sha-256
    - auth-host: scram-sha-256
  post_bootstrap: {post_bootstrap}

postgresql:
  listen: {host}:{pg}
  connect_address: {host}:{pg}
  data_dir: {data_dir}
  bin_dir: {bin_dir}
  pgpass: {pgpass}
  basebackup:
    - checkpoint: fast
  authentication:
    superuser:
      username: {su}
      password: {su_pw}
    replication:
      username: {repl}
      password: {repl_pw}
  parameters:
    unix_socket_directories: {socket_dir}
    fsync: 'off'
  pg_hba:
    - local all all scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
    - host all all ::1/128 scram-sha-256
    - host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256
    - host replication {REPLICATION_USER} ::1/128 scram-sha-256
    - host all all 10.213.0.0/16 scram-sha-256
    - host replication {REPLICATION_USER} 10.213.0.0/16 scram-sha-256

watchdog:
  mode: off

tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
"
    )
}

/// Run once by the member that ran initdb, with a superuser connstring as
/// `$1` and PGPASSFILE set by Patroni. Creating the role here rather than in
/// `bootstrap.users` keeps working on Patroni releases that dropped that.
pub fn post_bootstrap_sh(psql: &Path) -> String {
    let psql = psql.display().to_string().replace('\'', "'\\''");
    let pw = HA_APP_PASSWORD.replace('\'', "''");
    format!(
        "\
#!/bin/sh
set -e
exec '{psql}' -X -q -v ON_ERROR_STOP=1 \"$1\" <<'SQL'
CREATE ROLE {HA_APP_USER} LOGIN PASSWORD '{pw}';
CREATE DATABASE {HA_APP_DB} OWNER {HA_APP_USER};
\\connect {HA_APP_DB}
SET ROLE {HA_APP_USER};
CREATE TABLE probe (id bigserial PRIMARY KEY, node text NOT NULL, ts timestamptz NOT NULL DEFAULT clock_timestamp());
SQL
"
    )
}
