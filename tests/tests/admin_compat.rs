//! pgwolf's admin console against a real PgBouncer (Debian's) in the same
//! situation: one database, one client. Every SHOW command both know must
//! have the same column names and types, so tools written for PgBouncer
//! parse pgwolf's answers.

use pgwolf_tests::tools::{child_command, give_to_server_user, run_bounded, workspace_dir};
use pgwolf_tests::{
    connect, free_port, Fixture, FixtureOptions, PoolMode, APP_DB, APP_PASSWORD, APP_USER,
};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHOWS: [&str; 11] = [
    "SHOW POOLS",
    "SHOW CLIENTS",
    "SHOW SERVERS",
    "SHOW DATABASES",
    "SHOW USERS",
    "SHOW LISTS",
    "SHOW STATS",
    "SHOW STATS_TOTALS",
    "SHOW STATS_AVERAGES",
    "SHOW CONFIG",
    "SHOW VERSION",
];

struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer(pg_port: u16) -> Bouncer {
    let dir = tempfile::Builder::new()
        .prefix("pgwolf-pgbouncer-")
        .tempdir_in("/tmp")
        .unwrap();
    let port = free_port();
    let ini = format!(
        "[databases]\n{APP_DB} = host=127.0.0.1 port={pg_port} dbname={APP_DB}\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = plain\n\
         auth_file = {d}/users.txt\nadmin_users = {APP_USER}\npool_mode = transaction\n\
         default_pool_size = 2\nunix_socket_dir =\nlogfile = {d}/pgbouncer.log\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("pgbouncer.ini"), ini).unwrap();
    std::fs::write(
        dir.path().join("users.txt"),
        format!("\"{APP_USER}\" \"{APP_PASSWORD}\"\n"),
    )
    .unwrap();
    give_to_server_user(dir.path());
    for f in ["pgbouncer.ini", "users.txt"] {
        give_to_server_user(&dir.path().join(f));
    }
    let program = std::path::PathBuf::from("pgbouncer");
    let mut cmd = child_command(&program, true);
    cmd.arg(dir.path().join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("pgbouncer (Debian package pgbouncer)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pgbouncer did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Bouncer {
        child,
        port,
        _dir: dir,
    }
}

type Answers = BTreeMap<String, serde_json::Value>;

fn columns(port: u16) -> Answers {
    let dsn = format!("postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/pgbouncer");
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_dir().join("tests/python/admin_columns.py"))
        .arg(&dsn)
        .args(SHOWS);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "admin_columns.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_columns_match_pgbouncer() {
    let opts = FixtureOptions::new(PoolMode::Transaction, 2)
        .setting(&format!("admin_users = [\"{APP_USER}\"]"));
    let fx = Fixture::with(opts).await;
    let bouncer = pgbouncer(fx.pg.port());
    // The same situation on both: one client that ran one query.
    let via_bouncer = connect(bouncer.port, APP_USER, APP_PASSWORD, APP_DB).await;
    via_bouncer.simple_query("SELECT 1").await.unwrap();
    let via_pgwolf = fx.connect().await;
    via_pgwolf.simple_query("SELECT 1").await.unwrap();

    let (theirs, ours) = (columns(bouncer.port), columns(fx.port()));
    for cmd in SHOWS {
        let (t, o) = (&theirs[cmd], &ours[cmd]);
        assert!(o.get("error").is_none(), "{cmd} on pgwolf: {o}");
        let mut theirs = t["columns"].as_array().unwrap().clone();
        if cmd == "SHOW STATS" {
            // pgwolf's one addition, last (see show.rs): for the Debian
            // exporter, which reads PgBouncer's pre-1.8 name.
            theirs.push(serde_json::json!(["total_requests", 1700]));
        }
        assert_eq!(
            o["columns"].as_array().unwrap(),
            &theirs,
            "{cmd}: columns (name, type OID)"
        );
        assert_eq!(o["tag"], t["tag"], "{cmd}: command tag");
    }

    // The values say the same things where both have them.
    let pool = |a: &Answers| -> Vec<serde_json::Value> {
        a["SHOW POOLS"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r[0] == APP_DB)
            .cloned()
            .collect()
    };
    let (tp, op) = (pool(&theirs), pool(&ours));
    assert_eq!(op.len(), 1, "{op:?}");
    assert_eq!(tp.len(), 1, "{tp:?}");
    // database, user, cl_active, cl_waiting; pool_mode last.
    for i in [0, 1, 2, 3, 15] {
        assert_eq!(
            op[0][i], tp[0][i],
            "SHOW POOLS column {i}: pgwolf {op:?}, PgBouncer {tp:?}"
        );
    }
    let stats = |a: &Answers| -> serde_json::Value {
        a["SHOW STATS_TOTALS"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == APP_DB)
            .cloned()
            .expect("appdb in SHOW STATS_TOTALS")
    };
    let (ts, os) = (stats(&theirs), stats(&ours));
    assert_eq!(os[1], ts[1], "xact_count: pgwolf {os}, PgBouncer {ts}");
    assert_ne!(os[3], "0", "bytes_sent counted: {os}");
    drop(bouncer);
}
