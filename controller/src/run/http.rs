//! `/healthz` (the process serves), `/readyz` (this replica leads, or
//! follows with a working Lease loop: both are fine for a Service-less
//! controller, so it is the same as healthz but for a lost Lease) and
//! `/metrics`, on the controller's HTTP port.

use super::metrics::Metrics;
use crate::api::PostgresCluster;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::runtime::reflector::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct State {
    pub metrics: Metrics,
    /// The controller's cache of the watched clusters (empty until this
    /// replica leads and its watch has listed them).
    pub clusters: Store<PostgresCluster>,
    /// False once the Lease loop gave up (the process is about to exit).
    pub lease_ok: AtomicBool,
}

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "http accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route<B>(state: &State, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
        "/readyz" if state.lease_ok.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".into()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "lost the leader Lease\n".into(),
        ),
        "/metrics" => {
            let clusters = state.clusters.state();
            let body = state.metrics.render(clusters.iter().map(|c| &**c));
            (StatusCode::OK, body)
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
    };
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(state: &State, path: &str) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        let req = Request::get(path).body(()).unwrap();
        let resp = route(state, &req);
        let status = resp.status();
        let body = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn health_ready_and_metrics() {
        let state = State {
            metrics: Metrics::new(),
            clusters: kube::runtime::reflector::store().0,
            lease_ok: true.into(),
        };
        state.metrics.leading.set(1);
        assert_eq!(get(&state, "/healthz").0, StatusCode::OK);
        assert_eq!(get(&state, "/readyz").0, StatusCode::OK);
        let (status, body) = get(&state, "/metrics");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("pgwolf_controller_leading 1"), "{body}");
        assert!(
            body.contains("pgwolf_controller_clusters_watched 0"),
            "{body}"
        );
        assert_eq!(get(&state, "/nope").0, StatusCode::NOT_FOUND);

        state.lease_ok.store(false, Ordering::Relaxed);
        let (status, body) = get(&state, "/readyz");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("Lease"));
        assert_eq!(get(&state, "/healthz").0, StatusCode::OK);
    }
}
