//! [`Lab`]: test hosts with their own addresses, and a fault injector that
//! makes a host vanish the way a lost Kubernetes node does: its packets
//! are dropped (nftables inside its namespace), nothing answers with a
//! reset. Each host is a network namespace (iproute2) joined to a bridge
//! in a hub namespace; the test process's own namespace joins the bridge
//! too, as the host pgwolf and the clients run on (address `.254`), so a
//! test reaches every host directly. Nothing outside the lab's namespaces
//! is touched but one veth in the test's namespace and its /24 route, both
//! gone when the lab is dropped. Needs root, `ip` and `nft`.
//!
//! Labs of parallel test processes do not meet: each claims a number
//! `n` (namespace `pgw<n>hub` made atomically, the subnet 10.213.n.0/24)
//! and a lab left behind by a killed process is removed when its number is
//! claimed again.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A lab's hosts and the address of the test's own side.
pub struct Lab {
    n: u8,
    hosts: Vec<Host>,
}

/// One host: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub netns: String,
    pub addr: Ipv4Addr,
}

/// What a fault cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every packet in or out, but loopback.
    All,
    /// Packets arriving at the host; what it sends still leaves.
    Incoming,
    /// Packets the host sends.
    Outgoing,
}

const TABLE: &str = "pgwolf_fault";

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("network lab: {e}");
    }
}

fn marker_dir() -> PathBuf {
    std::env::temp_dir().join("pgwolf-netns")
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Every namespace of lab `n`.
fn namespaces_of(n: u8) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let prefix = format!("pgw{n}-");
    let hub = format!("pgw{n}hub");
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix) || *name == hub)
        .map(str::to_string)
        .collect()
}

fn remove_lab(n: u8) {
    for ns in namespaces_of(n) {
        let _ = run(&["ip", "netns", "delete", &ns]);
    }
    let _ = run(&["ip", "link", "delete", &format!("pgw{n}r")]);
    let _ = std::fs::remove_file(marker_dir().join(format!("{n}.pid")));
}

impl Lab {
    /// Makes a lab with these hosts (addresses .1, .2, ... in order).
    pub fn new(names: &[&str]) -> Lab {
        assert!(
            crate::tools::running_as_root(),
            "network namespaces need root"
        );
        std::fs::create_dir_all(marker_dir()).expect("marker dir");
        let start = (std::process::id() % 200) as u16;
        let n = (0..250u16)
            .map(|i| ((start + i) % 250 + 1) as u8)
            .find(|&n| {
                let marker = marker_dir().join(format!("{n}.pid"));
                if let Some(pid) = std::fs::read_to_string(&marker)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
                {
                    if pid_alive(pid) {
                        return false;
                    }
                    remove_lab(n);
                }
                let claimed = run(&["ip", "netns", "add", &format!("pgw{n}hub")]).is_ok();
                if claimed {
                    std::fs::write(&marker, std::process::id().to_string()).expect("marker");
                }
                claimed
            })
            .expect("a free lab number");
        let mut lab = Lab {
            n,
            hosts: Vec::new(),
        };
        lab.build(names);
        lab
    }

    fn hub(&self) -> String {
        format!("pgw{}hub", self.n)
    }

    fn build(&mut self, names: &[&str]) {
        let (n, hub) = (self.n, self.hub());
        must(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            assert!(i < 250, "at most 250 hosts");
            let netns = format!("pgw{n}-{name}");
            let addr = Ipv4Addr::new(10, 213, n, i as u8 + 1);
            let (outer, inner) = (format!("h{n}x{i}"), format!("e{n}x{i}"));
            must(&["ip", "netns", "add", &netns]);
            must(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            must(&["ip", "link", "set", &outer, "netns", &hub]);
            must(&["ip", "link", "set", &inner, "netns", &netns]);
            must(&["ip", "-n", &hub, "link", "set", &outer, "master", "br0"]);
            must(&["ip", "-n", &hub, "link", "set", &outer, "up"]);
            must(&["ip", "-n", &netns, "link", "set", &inner, "name", "eth0"]);
            must(&[
                "ip",
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &netns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
            self.hosts.push(Host {
                name: name.to_string(),
                netns,
                addr,
            });
        }
        let (root, peer) = (format!("pgw{n}r"), format!("r{n}"));
        must(&[
            "ip", "link", "add", &root, "type", "veth", "peer", "name", &peer,
        ]);
        must(&["ip", "link", "set", &peer, "netns", &hub]);
        must(&["ip", "-n", &hub, "link", "set", &peer, "master", "br0"]);
        must(&["ip", "-n", &hub, "link", "set", &peer, "up"]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.local_addr()),
            "dev",
            &root,
        ]);
        must(&["ip", "link", "set", &root, "up"]);
    }

    /// The test process's own address on the lab's bridge.
    pub fn local_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.n, 254)
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// `program` run inside `host`'s namespace: `ip netns exec` execs it
    /// in place, so the pid is the program's and signals reach it.
    pub fn command(&self, host: &str, program: &std::ffi::OsStr) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(host).netns])
            .arg(program);
        cmd
    }

    /// Drops `host`'s packets as `cut` says, from now until [`Lab::heal`].
    pub fn cut(&self, host: &str, cut: Cut) {
        self.heal(host);
        let (input, output) = match cut {
            Cut::All => ("drop", "drop"),
            Cut::Incoming => ("drop", "accept"),
            Cut::Outgoing => ("accept", "drop"),
        };
        self.nft(
            host,
            &format!(
                "table inet {TABLE} {{\n\
                 chain input {{ type filter hook input priority 0; policy accept; iifname \"lo\" accept; {input}; }}\n\
                 chain output {{ type filter hook output priority 0; policy accept; oifname \"lo\" accept; {output}; }}\n\
                 }}\n"
            ),
        );
    }

    /// Drops only what passes between `host` and `peers` (addresses), both
    /// ways, optionally to one TCP port of `host` (e.g. Patroni's 8008).
    pub fn cut_between(&self, host: &str, peers: &[Ipv4Addr], port: Option<u16>) {
        assert!(!peers.is_empty(), "cut_between needs a peer");
        self.heal(host);
        let set = peers
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (in_port, out_port) = match port {
            Some(p) => (format!("tcp dport {p} "), format!("tcp sport {p} ")),
            None => (String::new(), String::new()),
        };
        self.nft(
            host,
            &format!(
                "table inet {TABLE} {{\n\
                 chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} {in_port}drop; }}\n\
                 chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} {out_port}drop; }}\n\
                 }}\n"
            ),
        );
    }

    /// Removes every fault on `host`.
    pub fn heal(&self, host: &str) {
        let netns = &self.host(host).netns;
        let _ = run(&[
            "ip", "netns", "exec", netns, "nft", "delete", "table", "inet", TABLE,
        ]);
    }

    fn nft(&self, host: &str, rules: &str) {
        let netns = &self.host(host).netns;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("rules.nft");
        std::fs::write(&file, rules).expect("write rules");
        must(&[
            "ip",
            "netns",
            "exec",
            netns,
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        remove_lab(self.n);
    }
}
