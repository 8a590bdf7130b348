//! [`PgBouncer`]: Debian's PgBouncer (1.18 on Debian 12) as the peer that
//! failover figures are compared with, started on a free port in a temp
//! dir (as [`SERVER_USER`](crate::tools::SERVER_USER) when the tests are
//! root: PgBouncer refuses to run as root), its `[databases]` rewritten and
//! reloaded (SIGHUP) the way a user's script would re-point it.

use crate::ports::free_port;
use crate::tools::{child_command, give_to_server_user, read_lossy, send_signal, tail};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const START_LIMIT: Duration = Duration::from_secs(15);

/// The PgBouncer binary: `$PGBOUNCER_BIN`, else Debian's.
pub fn pgbouncer_bin() -> PathBuf {
    std::env::var_os("PGBOUNCER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"))
}

/// A running PgBouncer; killed on `Drop`.
pub struct PgBouncer {
    port: u16,
    settings: String,
    child: Child,
    // Last field: removed after the process is gone.
    dir: TempDir,
}

impl PgBouncer {
    /// PgBouncer with `databases` (the `[databases]` lines), `settings`
    /// (more `[pgbouncer]` lines) and `userlist` (userlist.txt). Waits
    /// until it accepts TCP.
    pub fn start(databases: &str, settings: &str, userlist: &str) -> PgBouncer {
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-pgbouncer-")
            .tempdir()
            .expect("temp dir for PgBouncer");
        std::fs::write(dir.path().join("userlist.txt"), userlist).expect("write userlist");
        let port = free_port();
        write_ini(dir.path(), port, settings, databases);
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("log file");
        give_to_server_user(dir.path());
        let mut cmd = child_command(&pgbouncer_bin(), true);
        cmd.arg(dir.path().join("pgbouncer.ini"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", pgbouncer_bin().display()));
        let mut bouncer = PgBouncer {
            port,
            settings: settings.to_string(),
            child,
            dir,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("PgBouncer exited with {status}:\n{}", bouncer.log());
            }
            assert!(
                Instant::now() < deadline,
                "PgBouncer did not listen within {START_LIMIT:?}:\n{}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Rewrites `[databases]` and reloads (SIGHUP), as `RELOAD` would.
    pub fn repoint(&self, databases: &str) {
        write_ini(self.dir.path(), self.port, &self.settings, databases);
        send_signal(self.child.id(), "HUP");
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("pgbouncer.log"))
    }
}

fn write_ini(dir: &Path, port: u16, settings: &str, databases: &str) {
    let ini = format!(
        "[databases]\n{databases}\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
         unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}\n{settings}\n",
        dir.join("userlist.txt").display(),
    );
    // Written whole and renamed: a reload never reads half a file.
    let tmp = dir.join("pgbouncer.ini.new");
    std::fs::write(&tmp, ini).expect("write pgbouncer.ini");
    std::fs::rename(&tmp, dir.join("pgbouncer.ini")).expect("rename pgbouncer.ini");
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- PgBouncer log (port {}), last lines ----\n{}\n----",
                self.port,
                tail(&self.log(), 40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
