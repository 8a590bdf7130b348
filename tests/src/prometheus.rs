//! A real Prometheus (Debian's `prometheus`) and real postgres_exporters
//! (Debian's `prometheus-postgres-exporter`) on free ports in temp dirs,
//! for the monitoring tests: what the dashboards and alert rules in
//! deploy/monitoring/ ask, asked of the real thing. Both die with the test
//! (parent-death signal, and Drop).

use crate::free_port;
use crate::tools::{child_command, tail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const START_LIMIT: Duration = Duration::from_secs(30);

/// A scrape job: its name and `host:port` targets.
pub struct Job {
    pub name: String,
    pub targets: Vec<String>,
}

pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `jobs` every second and evaluates `rule_files` every second.
    pub fn start(jobs: &[Job], rule_files: &[PathBuf]) -> Prometheus {
        let scrape: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "job_name": j.name,
                    "static_configs": [{ "targets": j.targets }],
                })
            })
            .collect();
        Prometheus::start_with_scrape_configs(&serde_json::Value::Array(scrape), rule_files)
    }

    /// As [`Prometheus::start`] with `scrape_configs` as given (a JSON
    /// array of Prometheus's scrape config objects).
    pub fn start_with_scrape_configs(
        scrape_configs: &serde_json::Value,
        rule_files: &[PathBuf],
    ) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-prometheus-")
            .tempdir()
            .expect("temp dir for Prometheus");
        // JSON is YAML: Prometheus reads the config as written here.
        let config = serde_json::json!({
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "1s",
            },
            "rule_files": rule_files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "scrape_configs": scrape_configs,
        })
        .to_string();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = child_command(Path::new("/usr/bin/prometheus"), false)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run prometheus (scripts/install-deps installs it)");
        let p = Prometheus { child, port, dir };
        let deadline = Instant::now() + START_LIMIT;
        while http_get(port, "/-/ready").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready:\n{}",
                tail(&p.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// Its HTTP API's base URL, for tools that query it themselves.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        crate::tools::read_lossy(&self.dir.path().join("prometheus.log"))
    }

    /// `/api/v1/query`: the result vector of an instant query; panics on an
    /// error (a PromQL mistake is a test failure).
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(promql)));
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{promql}: {v}"))
            .clone()
    }

    /// A GET of the HTTP API, parsed; `status` must be success.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.port, path).expect("Prometheus answers");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(
            status == 200 && v["status"] == "success",
            "{path}: {status} {body}"
        );
        v
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- prometheus log ----\n{}", tail(&self.log(), 40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// postgres_exporter for one PostgreSQL, with pgwolf's query file.
pub struct PgExporter {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgExporter {
    /// `dsn`: a libpq URL the exporter logs in with (kept in its
    /// environment, as the sidecar's comes from a Secret).
    pub fn start(dsn: &str, queries: &Path) -> PgExporter {
        PgExporter::start_with_env(&[("DATA_SOURCE_NAME", dsn)], queries)
    }

    /// As [`PgExporter::start`] with the login in `env`
    /// (`DATA_SOURCE_URI`, `DATA_SOURCE_USER`, `DATA_SOURCE_PASS`, as the
    /// controller's sidecar has it).
    pub fn start_with_env(env: &[(&str, &str)], queries: &Path) -> PgExporter {
        let dir = tempfile::Builder::new()
            .prefix("pgwolf-exporter-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log = dir.path().join("exporter.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = child_command(Path::new("/usr/bin/prometheus-postgres-exporter"), false)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--extend.query-path={}", queries.display()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run prometheus-postgres-exporter (scripts/install-deps installs it)");
        let e = PgExporter {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_LIMIT;
        while http_get(port, "/metrics").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "postgres_exporter not up:\n{}",
                tail(&crate::tools::read_lossy(&e.log), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics").map_or_else(String::new, |(_, body)| body)
    }
}

impl Drop for PgExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, body) of an HTTP/1.0 GET (no chunked answers to undo).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Percent-encoding of a query-string value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The metric names an expression reads: every identifier that starts
/// like pgwolf's, PostgreSQL's or Prometheus's own series (`up`).
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut in_string = false;
    let mut in_braces = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        // A word ends here: judged by where it stood, before `c` counts.
        let w = std::mem::take(&mut word);
        let ours = w.starts_with("pg_") || w.starts_with("pgwolf_") || w == "up";
        if ours && !in_string && !in_braces && !names.contains(&w) {
            names.push(w);
        }
        match c {
            '"' => in_string = !in_string,
            '{' if !in_string => in_braces = true,
            '}' if !in_string => in_braces = false,
            _ => {}
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_in_expressions() {
        let e = "max by (database) (pgwolf_pool_servers{state=\"active\"}) / max(pgwolf_pool_size) > 0.9 and up{job=\"pg_x\"}";
        assert_eq!(
            super::metric_names(e),
            ["pgwolf_pool_servers", "pgwolf_pool_size", "up"]
        );
        assert_eq!(super::encode("a b{\"c\"}"), "a%20b%7B%22c%22%7D");
    }
}
