//! Real clients: tokio-postgres connections, `psql` and `pgbench` runs.
//!
//! Every client talks TCP to 127.0.0.1 only. psql and pgbench get the
//! password through `PGPASSWORD` and run with a time limit.

use crate::tools::{pg_bin, run_bounded};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

/// Connect and login must finish within this (the TCP connect alone: 10 s).
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
const PSQL_LIMIT: Duration = Duration::from_secs(120);
const PGBENCH_LIMIT: Duration = Duration::from_secs(300);

/// A tokio-postgres config for 127.0.0.1:`port`.
pub fn config(port: u16, user: &str, password: &str, db: &str) -> Config {
    config_at("127.0.0.1", port, user, password, db)
}

/// As [`config`], to another address (a [`crate::netns::Lab`] host).
pub fn config_at(host: &str, port: u16, user: &str, password: &str, db: &str) -> Config {
    let mut config = Config::new();
    config
        .host(host)
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    config
}

/// Connect with `config`, spawning the connection task on the current
/// runtime. Panics if login hangs longer than 30 s.
pub async fn try_connect_with(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let connecting = config.connect(NoTls);
    let (client, connection) = match tokio::time::timeout(CONNECT_LIMIT, connecting).await {
        Ok(result) => result?,
        Err(_) => panic!("connect {config:?} hung for {CONNECT_LIMIT:?}"),
    };
    tokio::spawn(async move {
        // Errors surface through the client's next call; nothing to do here.
        let _ = connection.await;
    });
    Ok(client)
}

pub async fn try_connect(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    try_connect_with(&config(port, user, password, db)).await
}

/// Connect or panic with the error.
pub async fn connect(port: u16, user: &str, password: &str, db: &str) -> Client {
    try_connect(port, user, password, db)
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port} as {user} to {db}: {e} ({e:?})"))
}

/// First column of the first row of `sql`, over the simple query protocol
/// (one round trip, no named statements: safe in any pool mode).
pub async fn simple_value(
    client: &Client,
    sql: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(String::from)),
            _ => None,
        })
        .flatten())
}

/// Every row of `sql` (simple query protocol) as column name → text
/// (NULL as ""): what the admin console's SHOW commands are read with.
pub async fn simple_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<std::collections::BTreeMap<String, String>>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).unwrap_or("").to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The SQLSTATE code of an error from the server (or proxy), if it has one.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<&str> {
    err.code().map(|c| c.code())
}

/// A libpq program (`psql`, `pgbench`, ...) with connection settings in its
/// environment. Inherited `PG*` variables are removed so they cannot leak in.
pub fn libpq_command(program: &str, port: u16, user: &str, password: &str, db: &str) -> Command {
    let mut cmd = Command::new(pg_bin(program));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .env("PGDATABASE", db)
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// `psql -X -A -t -v ON_ERROR_STOP=1` ready for `-c`/`-f` arguments.
pub fn psql_command(port: u16, user: &str, password: &str, db: &str) -> Command {
    let mut cmd = libpq_command("psql", port, user, password, db);
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ]);
    cmd
}

/// Run `sql` (one `-c`, so one Query message) with psql.
pub fn psql(port: u16, user: &str, password: &str, db: &str, sql: &str) -> Output {
    psql_commands(port, user, password, db, &[sql])
}

/// Run each command as its own `-c` (each its own Query message) in one session.
pub fn psql_commands(port: u16, user: &str, password: &str, db: &str, sqls: &[&str]) -> Output {
    let mut cmd = psql_command(port, user, password, db);
    for sql in sqls {
        cmd.arg("-c").arg(sql);
    }
    run_bounded(&mut cmd, PSQL_LIMIT)
}

/// stdout of a psql run that must succeed, trimmed.
pub fn psql_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A finished pgbench run.
#[derive(Debug)]
pub struct PgbenchRun {
    pub status: ExitStatus,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub stats: PgbenchStats,
}

impl PgbenchRun {
    /// stdout and stderr together, for assertion messages.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panic unless pgbench succeeded with zero failed transactions and at
    /// least one processed; returns the processed count.
    pub fn assert_clean(&self) -> u64 {
        assert!(
            self.success,
            "pgbench failed ({}):\n{}",
            self.status,
            self.output()
        );
        assert_eq!(
            self.stats.failed,
            Some(0),
            "failed transactions:\n{}",
            self.output()
        );
        let processed = self.stats.processed.unwrap_or(0);
        assert!(
            processed > 0,
            "no transactions processed:\n{}",
            self.output()
        );
        processed
    }
}

/// Numbers from pgbench's report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PgbenchStats {
    /// "number of transactions actually processed: N" (or "N/M").
    pub processed: Option<u64>,
    /// "number of failed transactions: N (x%)"; PostgreSQL 15+.
    pub failed: Option<u64>,
    /// The first "tps = X" line.
    pub tps: Option<f64>,
}

/// Parse pgbench's report text (stdout).
pub fn parse_pgbench(text: &str) -> PgbenchStats {
    let mut stats = PgbenchStats::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            stats.processed = leading_number(rest.trim().split('/').next().unwrap_or(""));
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            stats.failed = leading_number(rest);
        } else if let Some(rest) = line.strip_prefix("tps =") {
            if stats.tps.is_none() {
                stats.tps = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        }
    }
    stats
}

fn leading_number(text: &str) -> Option<u64> {
    text.split_whitespace().next().and_then(|n| n.parse().ok())
}

/// Run `pgbench -h 127.0.0.1 -p PORT -U USER ARGS... DB`.
pub fn pgbench(port: u16, user: &str, password: &str, db: &str, args: &[&str]) -> PgbenchRun {
    let mut cmd = libpq_command("pgbench", port, user, password, db);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(args)
        .arg(db);
    let out = run_bounded(&mut cmd, PGBENCH_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    PgbenchRun {
        status: out.status,
        success: out.status.success(),
        stats: parse_pgbench(&stdout),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT_T: &str = "pgbench (15.8 (Debian 15.8-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 100
number of threads: 2
maximum number of tries: 1
number of transactions per client: 50
number of transactions actually processed: 5000/5000
number of failed transactions: 0 (0.000%)
latency average = 25.104 ms
initial connection time = 812.004 ms
tps = 3983.478145 (without initial connection time)
";

    const REPORT_DURATION: &str = "transaction type: <builtin: TPC-B (sort of)>
duration: 5 s
number of transactions actually processed: 1234
number of failed transactions: 7 (0.564%)
tps = 246.1 (without initial connection time)
";

    #[test]
    fn parses_fixed_count_report() {
        let s = parse_pgbench(REPORT_T);
        assert_eq!(s.processed, Some(5000));
        assert_eq!(s.failed, Some(0));
        assert!((s.tps.unwrap() - 3983.478145).abs() < 1e-6);
    }

    #[test]
    fn parses_duration_report() {
        let s = parse_pgbench(REPORT_DURATION);
        assert_eq!(s.processed, Some(1234));
        assert_eq!(s.failed, Some(7));
        assert_eq!(s.tps, Some(246.1));
    }

    #[test]
    fn missing_lines_stay_none() {
        assert_eq!(
            parse_pgbench("pgbench: error: connection failed"),
            PgbenchStats::default()
        );
    }
}
