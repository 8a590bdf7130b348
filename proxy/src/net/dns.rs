//! Server host names and the addresses they resolve to, kept for
//! `dns_max_ttl` (failures for `dns_nxdomain_ttl`) as PgBouncer keeps them,
//! so a burst of new server connections costs one lookup, and SHOW
//! DNS_HOSTS can say what pgwolf is using. Lookups go through the system
//! resolver (getaddrinfo: /etc/hosts, nsswitch, resolv.conf), so there is
//! no zone to check (`dns_zone_check_period` has nothing to do).
//!
//! A cached answer can be stale: a pod came back under its name with a new
//! address. The caller reports a failed connect ([`DnsCache::forget`]) and
//! the next attempt resolves afresh, so a stale entry costs one attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long answers are kept (`dns_max_ttl`, `dns_nxdomain_ttl`); zero
/// keeps nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsTtl {
    pub found: Duration,
    pub failed: Duration,
}

impl DnsTtl {
    /// `dns_max_ttl` and `dns_nxdomain_ttl`.
    pub fn from_config(cfg: &crate::config::Config) -> DnsTtl {
        DnsTtl {
            found: cfg.dns_max_ttl,
            failed: cfg.dns_nxdomain_ttl,
        }
    }
}

impl Default for DnsTtl {
    /// PgBouncer's defaults.
    fn default() -> Self {
        DnsTtl {
            found: Duration::from_secs(15),
            failed: Duration::from_secs(15),
        }
    }
}

/// A host name's last answer.
struct Entry {
    answer: Result<Vec<IpAddr>, String>,
    resolved: Instant,
    /// Rotates the addresses of a name with several, as PgBouncer spreads
    /// new connections over a round-robin DNS name.
    next: usize,
}

/// One row of SHOW DNS_HOSTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedHost {
    pub host: String,
    /// Until the answer is looked up again.
    pub ttl: Duration,
    /// The addresses, or the lookup's error.
    pub answer: Result<Vec<IpAddr>, String>,
}

#[derive(Default)]
pub struct DnsCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl DnsCache {
    /// The addresses of `host`, first the one whose turn it is; an IP
    /// address is its own answer and is not cached.
    pub async fn resolve(&self, host: &str, ttl: DnsTtl) -> std::io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if let Some(answer) = self.cached(host, ttl) {
            return answer.map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e));
        }
        let looked_up = tokio::net::lookup_host((host, 0))
            .await
            .map(|addrs| {
                let mut ips: Vec<IpAddr> = Vec::new();
                for a in addrs {
                    if !ips.contains(&a.ip()) {
                        ips.push(a.ip());
                    }
                }
                ips
            })
            .map_err(|e| e.to_string())
            .and_then(|ips| {
                if ips.is_empty() {
                    Err(format!("{host} has no addresses"))
                } else {
                    Ok(ips)
                }
            });
        let keep = match &looked_up {
            Ok(_) => ttl.found,
            Err(_) => ttl.failed,
        };
        if !keep.is_zero() {
            self.entries.lock().unwrap().insert(
                host.to_string(),
                Entry {
                    answer: looked_up.clone(),
                    resolved: Instant::now(),
                    next: 1,
                },
            );
        }
        looked_up.map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("could not resolve {host}: {e}"),
            )
        })
    }

    /// A fresh answer, rotated; stale ones are dropped.
    fn cached(&self, host: &str, ttl: DnsTtl) -> Option<Result<Vec<IpAddr>, String>> {
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.get_mut(host)?;
        let keep = match &entry.answer {
            Ok(_) => ttl.found,
            Err(_) => ttl.failed,
        };
        if entry.resolved.elapsed() >= keep {
            entries.remove(host);
            return None;
        }
        let answer = match &entry.answer {
            Ok(ips) => {
                let mut ips = ips.clone();
                let turn = entry.next % ips.len();
                ips.rotate_left(turn);
                entry.next = entry.next.wrapping_add(1);
                Ok(ips)
            }
            Err(e) => Err(format!("could not resolve {host}: {e} (cached)")),
        };
        Some(answer)
    }

    /// Connecting to what `host` resolved to failed: look it up again next
    /// time rather than trust the answer for the rest of its TTL.
    pub fn forget(&self, host: &str) {
        self.entries.lock().unwrap().remove(host);
    }

    /// How many names are cached (SHOW LISTS `dns_names`).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every cached name, sorted (SHOW DNS_HOSTS).
    pub fn snapshot(&self, ttl: DnsTtl) -> Vec<CachedHost> {
        let entries = self.entries.lock().unwrap();
        let mut out: Vec<CachedHost> = entries
            .iter()
            .filter_map(|(host, e)| {
                let keep = if e.answer.is_ok() {
                    ttl.found
                } else {
                    ttl.failed
                };
                let left = keep.checked_sub(e.resolved.elapsed())?;
                Some(CachedHost {
                    host: host.clone(),
                    ttl: left,
                    answer: e.answer.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: DnsTtl = DnsTtl {
        found: Duration::from_secs(60),
        failed: Duration::from_secs(60),
    };

    #[tokio::test]
    async fn names_are_kept_rotated_and_forgotten() {
        let cache = DnsCache::default();
        let ip = cache.resolve("10.1.2.3", TTL).await.unwrap();
        assert_eq!(ip, ["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert!(cache.snapshot(TTL).is_empty(), "addresses are not cached");

        let first = cache.resolve("localhost", TTL).await.unwrap();
        assert!(first.iter().all(|ip| ip.is_loopback()), "{first:?}");
        let rows = cache.snapshot(TTL);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].host, "localhost");
        assert!(rows[0].ttl > Duration::from_secs(59));
        // A second answer comes from the cache, the next address first.
        let second = cache.resolve("localhost", TTL).await.unwrap();
        let mut sorted = (first.clone(), second.clone());
        sorted.0.sort();
        sorted.1.sort();
        assert_eq!(sorted.0, sorted.1);
        if first.len() > 1 {
            assert_ne!(first[0], second[0]);
        }
        cache.forget("localhost");
        assert!(cache.snapshot(TTL).is_empty());

        // Failures are kept too, for dns_nxdomain_ttl.
        let e = cache
            .resolve("no-such-host.invalid", TTL)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
        assert!(cache.snapshot(TTL)[0].answer.is_err());
        let again = cache
            .resolve("no-such-host.invalid", TTL)
            .await
            .unwrap_err();
        assert!(again.to_string().contains("(cached)"), "{again}");

        // A zero TTL keeps nothing.
        let none = DnsTtl {
            found: Duration::ZERO,
            failed: Duration::ZERO,
        };
        let cache = DnsCache::default();
        cache.resolve("localhost", none).await.unwrap();
        assert!(cache.snapshot(none).is_empty());
    }
}
