//! `--scrape-metrics SECS`: pgwolf serves `/metrics` and a thread of ours
//! fetches it every SECS seconds for as long as pgwolf runs, so a run
//! with it and one without show what the metrics cost (issue 6). Prometheus
//! itself scrapes every 15 to 60 s; 1 s is the harsh case.
//!
//! Plain HTTP/1.0 over a std TcpStream: one request, read to EOF, check the
//! status line and that the body names a pgwolf metric. Every answer is
//! counted, so a scraper that silently failed cannot pass for a cheap one.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one scraper saw over a proxy's life.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScrapeStats {
    pub interval_s: f64,
    pub scrapes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Median size and time of a successful scrape.
    pub median_bytes: Option<u64>,
    pub median_ms: Option<f64>,
}

pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ScrapeStats>>,
}

impl Scraper {
    pub fn start(port: u16, interval: Duration) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || scrape_loop(port, interval, &flag));
        Scraper {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> ScrapeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn scrape_loop(port: u16, interval: Duration, stop: &AtomicBool) -> ScrapeStats {
    let mut stats = ScrapeStats {
        interval_s: interval.as_secs_f64(),
        ..ScrapeStats::default()
    };
    let mut sizes = Vec::new();
    let mut times = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            next += interval;
            let started = Instant::now();
            match scrape_once(port) {
                Ok(bytes) => {
                    stats.scrapes += 1;
                    sizes.push(bytes as f64);
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                Err(e) => {
                    stats.failures += 1;
                    stats.last_error = Some(e);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stats.median_bytes = crate::load::measure::median(&sizes).map(|b| b as u64);
    stats.median_ms = crate::load::measure::median(&times);
    stats
}

/// The body's length, or what was wrong.
fn scrape_once(port: u16) -> Result<usize, String> {
    let limit = Duration::from_secs(5);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no end of headers".to_string())?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("status: {status}"));
    }
    if !body.contains("pgwolf_") {
        return Err("no pgwolf_ metric in the body".into());
    }
    Ok(body.len())
}
