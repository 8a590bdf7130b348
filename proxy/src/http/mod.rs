//! The HTTP listener (`http_listen`, default 127.0.0.1:9930, "" for none):
//! `/metrics` (Prometheus text format), `/healthz` (the process answers),
//! `/readyz` (listening, and every database on a cluster has a primary:
//! a Kubernetes readiness probe), `/topology` (JSON).

mod metrics;

use crate::app::App;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use metrics::render as render_metrics;

/// Binds `addr` (at start, so a taken port is an error then, not later).
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until shutdown. Requests are tiny and rare: one task each.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = app.shutdown.cancelled() => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&app, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn route<B>(app: &App, req: &Request<B>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(app),
        ),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => match not_ready(app) {
            None => reply(StatusCode::OK, TEXT, "ready\n".into()),
            Some(why) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
        },
        "/topology" => reply(StatusCode::OK, "application/json", topology_json(app)),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "try /metrics, /healthz, /readyz, /topology\n".into(),
        ),
    }
}

/// Why pgwolf should not get traffic now, if it should not.
fn not_ready(app: &App) -> Option<String> {
    if app.shutdown.is_cancelled() {
        return Some("shutting down".into());
    }
    let cfg = app.config.load();
    for (db, d) in &cfg.databases {
        let Some(name) = &d.cluster else { continue };
        let known = app
            .cluster_named(name)
            .is_some_and(|c| c.current().primary().is_some());
        if !known {
            return Some(format!(
                "database {db}: no primary known for cluster {name}"
            ));
        }
    }
    None
}

fn topology_json(app: &App) -> String {
    let cfg = app.config.load();
    let mut clusters = serde_json::Map::new();
    for name in cfg.clusters.keys() {
        let Some(c) = app.cluster_named(name) else {
            continue;
        };
        let t = c.current();
        let members: Vec<serde_json::Value> = t
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name, "host": m.host, "port": m.port,
                    "role": m.role.as_str(), "lag": m.lag,
                })
            })
            .collect();
        clusters.insert(
            name.clone(),
            serde_json::json!({
                "primary": t.primary().map(|m| m.name.clone()),
                "members": members,
                "primary_changes": t.primary_changes,
                "last_change": t.changed_at.map(|at| humantime::format_rfc3339_seconds(at).to_string()),
                "error": t.error,
            }),
        );
    }
    serde_json::json!({ "clusters": clusters }).to_string()
}
