//! kube-fake-client (an in-memory API server: objects, server-side apply,
//! status subresource, resourceVersion) behind our kube 5 `Client`.
//!
//! kube-fake-client 0.3 is built on kube 4.2, so its `Client` is another
//! crate's type than ours. The bridge is HTTP: our client's requests are
//! handed to its `Client::send` as they are (same `http` crate, JSON
//! bodies), and its responses come back unchanged. So every request the
//! reconciler makes goes through kube 5's real request building and
//! response parsing, and kube-fake-client's real routing and storage.

use http_body_util::BodyExt;
use k8s_openapi_028::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use std::borrow::Cow;

/// PostgresCluster as kube 4 sees it, only to register the CRD's group,
/// version, plural and status subresource with the fake API server. Stored
/// objects are JSON there; this type never holds one.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CrdMarker {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
}

impl Default for CrdMarker {
    fn default() -> Self {
        CrdMarker {
            api_version: "pgwolf.io/v1alpha1",
            kind: "PostgresCluster",
            metadata: ObjectMeta::default(),
        }
    }
}

impl kube4::Resource for CrdMarker {
    type DynamicType = ();
    type Scope = k8s_openapi_028::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "PostgresCluster".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "pgwolf.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "postgresclusters".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client of a new fake API server holding `objects` (JSON, each with
/// apiVersion and kind).
pub async fn client(objects: Vec<serde_json::Value>) -> kube::Client {
    let fake = kube_fake_client::ClientBuilder::new()
        .with_resource::<CrdMarker>()
        .with_status_subresource::<CrdMarker>()
        .with_runtime_objects(objects)
        .build()
        .await
        .expect("kube-fake-client starts");
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let fake = fake.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let req = http::Request::from_parts(parts, kube4::client::Body::from(bytes.to_vec()));
            let response = fake.send(req).await?;
            Ok::<_, BoxError>(response)
        }
    });
    kube::Client::new(service, "default")
}
