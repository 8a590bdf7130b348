//! Patroni's dynamic configuration (`spec.patroni` and
//! `spec.postgresql.parameters`) on a running cluster. `bootstrap.dcs` in
//! the rendered patroni.yml seeds only a new cluster; afterwards the values live in
//! the DCS and change through `PATCH /config`. Patroni then reloads every
//! member, and marks parameters that need a restart `pending_restart`: the
//! rollout's pod recreation (the changed patroni.yml, whose hash the pod
//! template carries, makes a new revision) restarts them, replicas first.
//!
//! Only what the spec declares is written: a cluster first made by Spilo
//! keeps Spilo's defaults in the same `parameters` map, so a parameter
//! dropped from the spec keeps its value in the DCS rather than being
//! reset.

use crate::api::PostgresClusterSpec;
use pgwolf::topology::http;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{method} /config on {url}: {detail}")]
    Request {
        method: &'static str,
        url: String,
        detail: String,
    },
}

/// The dynamic configuration the spec asks for.
pub fn desired(spec: &PostgresClusterSpec) -> Value {
    json!({
        "ttl": spec.patroni.ttl,
        "loop_wait": spec.patroni.loop_wait,
        "retry_timeout": spec.patroni.retry_timeout,
        "failsafe_mode": spec.patroni.failsafe_mode,
        "synchronous_mode": spec.patroni.synchronous_mode,
        "postgresql": { "parameters": spec.postgresql.parameters },
    })
}

/// The PATCH body that makes `current` hold `desired`, or None when it
/// already does. Values compare as text: Patroni returns `200` where the
/// spec says `"200"`.
pub fn patch(desired: &Value, current: &Value) -> Option<Value> {
    let mut out = Map::new();
    for key in [
        "ttl",
        "loop_wait",
        "retry_timeout",
        "failsafe_mode",
        "synchronous_mode",
    ] {
        if text(&desired[key]) != text(&current[key]) {
            out.insert(key.into(), desired[key].clone());
        }
    }
    let mut params = Map::new();
    if let Some(wanted) = desired["postgresql"]["parameters"].as_object() {
        let have = &current["postgresql"]["parameters"];
        for (k, v) in wanted {
            if text(v) != text(&have[k]) {
                params.insert(k.clone(), v.clone());
            }
        }
    }
    if !params.is_empty() {
        out.insert("postgresql".into(), json!({ "parameters": params }));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads the DCS config from `url` and patches what differs; returns the
/// patch sent, if any.
pub async fn sync(
    url: &str,
    spec: &PostgresClusterSpec,
    timeout: Duration,
) -> Result<Option<Value>, Error> {
    let fail = |method, detail: String| Error::Request {
        method,
        url: url.to_string(),
        detail,
    };
    let r = http::request("GET", url, "/config", None, timeout)
        .await
        .map_err(|e| fail("GET", e.to_string()))?;
    if r.status != 200 {
        return Err(fail("GET", format!("answered {}", r.status)));
    }
    let current: Value =
        serde_json::from_slice(&r.body).map_err(|e| fail("GET", format!("bad JSON: {e}")))?;
    let Some(body) = patch(&desired(spec), &current) else {
        return Ok(None);
    };
    let r = http::request("PATCH", url, "/config", Some(body.to_string()), timeout)
        .await
        .map_err(|e| fail("PATCH", e.to_string()))?;
    if r.status != 200 {
        let text = String::from_utf8_lossy(&r.body);
        return Err(fail(
            "PATCH",
            format!(
                "answered {}: {}",
                r.status,
                text.chars().take(300).collect::<String>()
            ),
        ));
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(params: Value) -> PostgresClusterSpec {
        serde_json::from_value(json!({ "postgresql": { "parameters": params } })).unwrap()
    }

    #[test]
    fn only_what_differs_is_patched_and_values_compare_as_text() {
        let current = json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "failsafe_mode": true, "synchronous_mode": false,
            "postgresql": { "parameters": {
                "max_connections": 100, "wal_level": "logical", "work_mem": "4MB" } },
        });
        let want = desired(&spec(
            json!({ "max_connections": "100", "work_mem": "16MB" }),
        ));
        assert_eq!(
            patch(&want, &current),
            Some(json!({ "postgresql": { "parameters": { "work_mem": "16MB" } } }))
        );
        let same = desired(&spec(json!({ "max_connections": "100" })));
        assert_eq!(
            patch(&same, &current),
            None,
            "a wal_level the spec does not name is left alone"
        );
    }

    #[test]
    fn timing_and_new_parameters_are_patched() {
        let current = json!({ "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "failsafe_mode": true });
        let mut s = spec(json!({ "shared_buffers": "256MB" }));
        s.patroni.synchronous_mode = true;
        s.patroni.ttl = 20;
        s.patroni.loop_wait = 5;
        s.patroni.retry_timeout = 5;
        assert_eq!(
            patch(&desired(&s), &current),
            Some(json!({ "ttl": 20, "loop_wait": 5, "retry_timeout": 5,
                "synchronous_mode": true,
                "postgresql": { "parameters": { "shared_buffers": "256MB" } } }))
        );
    }
}
