//! Patroni's REST API on the instance pods: the cluster view and the
//! switchover. The HTTP client and the `/cluster` parser are pgwolf's own
//! (its `patroni` topology provider reads the same endpoint).

use pgwolf::topology::http;
use pgwolf::topology::patroni::parse_cluster;
use pgwolf::topology::{Member, Role};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no member's Patroni REST API answered ({0})")]
    Unreachable(String),
    #[error("POST /switchover to {url}: {detail}")]
    Switchover { url: String, detail: String },
    #[error("switched over, but {candidate} was not the running leader within {waited:?}")]
    NotPromoted { candidate: String, waited: Duration },
}

/// `GET /cluster` from the first of `urls` that answers: every member
/// reports the whole cluster from the DCS.
pub async fn cluster(urls: &[String], timeout: Duration) -> Result<Vec<Member>, Error> {
    answering(urls, timeout).await.map(|(members, _)| members)
}

/// `cluster`, and the URL that answered.
pub async fn answering(urls: &[String], timeout: Duration) -> Result<(Vec<Member>, String), Error> {
    let mut last = String::from("no member has an address yet");
    for url in urls {
        match http::request("GET", url, "/cluster", None, timeout).await {
            Ok(r) if r.status == 200 => match parse_cluster(&r.body) {
                Ok(members) => return Ok((members, url.clone())),
                Err(e) => last = format!("{url}: {e}"),
            },
            Ok(r) => last = format!("{url}: GET /cluster answered {}", r.status),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(Error::Unreachable(last))
}

/// Asks Patroni to hand the leader lock from `leader` to `candidate`, then
/// waits until `candidate` is the running leader: Patroni answers the POST
/// once the switchover is done, but a later poll is what shows it took.
pub async fn switchover(
    url: &str,
    leader: &str,
    candidate: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    let body = serde_json::json!({ "leader": leader, "candidate": candidate }).to_string();
    let fail = |detail: String| Error::Switchover {
        url: url.to_string(),
        detail,
    };
    let r = http::request("POST", url, "/switchover", Some(body), timeout)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if r.status != 200 {
        // Patroni's refusals are plain sentences ("candidate name does not
        // match with sync_standby", "Switchover failed"); no secrets.
        let text = String::from_utf8_lossy(&r.body);
        return Err(fail(format!(
            "answered {}: {}",
            r.status,
            text.chars().take(300).collect::<String>()
        )));
    }
    let urls = [url.to_string()];
    loop {
        if let Ok(members) = cluster(&urls, timeout).await {
            if members
                .iter()
                .any(|m| m.name == candidate && m.role == Role::Primary)
            {
                return Ok(());
            }
        }
        if started.elapsed() >= timeout {
            return Err(Error::NotPromoted {
                candidate: candidate.to_string(),
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
