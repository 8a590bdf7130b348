//! [`Stopped`]: processes paused with SIGSTOP, as a hung server looks (its
//! kernel still acknowledges every packet, so keepalives and
//! `tcp_user_timeout` see nothing wrong), and continued on `Drop`, failed
//! test or not.

use std::process::Command;

pub struct Stopped(Vec<u32>);

impl Stopped {
    /// One process.
    pub fn new(pid: u32) -> Stopped {
        signal("STOP", pid);
        Stopped(vec![pid])
    }

    /// A postmaster and every child it has: PostgreSQL puts each backend
    /// in a session of its own, so a process group does not reach them.
    /// The postmaster is stopped first, so it forks no child meanwhile.
    pub fn postmaster(pid: u32) -> Stopped {
        let mut stopped = Stopped::new(pid);
        for child in children(pid) {
            // A backend may exit between the listing and the signal.
            if send("STOP", child) {
                stopped.0.push(child);
            }
        }
        stopped
    }

    /// SIGKILL them all, stopped as they are (a hung node restarted).
    pub fn kill(mut self) {
        for pid in std::mem::take(&mut self.0) {
            send("KILL", pid);
        }
    }

    /// How many processes are stopped.
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in self.0.iter().rev() {
            send("CONT", *pid);
        }
    }
}

/// The pids whose parent is `pid` (from /proc/PID/stat).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                // "pid (comm) state ppid ...": comm may hold spaces and
                // parentheses, so read after its last ')'.
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn signal(name: &str, pid: u32) {
    assert!(send(name, pid), "kill -{name} {pid}");
}

fn send(name: &str, pid: u32) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}
