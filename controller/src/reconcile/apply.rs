//! The one way the controller writes a child: server-side apply with a
//! single field manager, forced. No create-versus-update branches: apply
//! creates a missing object (a deleted Service comes back on the next
//! reconcile) and converges an existing one, and fields other managers own
//! (Patroni's pod labels and Endpoints) are left alone.

use crate::resources::Child;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The field manager every write of the controller uses.
pub const FIELD_MANAGER: &str = "pgwolf-controller";

/// Applies `child` in `namespace`.
pub async fn apply(client: &Client, namespace: &str, child: &Child) -> Result<(), kube::Error> {
    match child {
        Child::ServiceAccount(o) => one(client, namespace, o).await,
        Child::Role(o) => one(client, namespace, o).await,
        Child::RoleBinding(o) => one(client, namespace, o).await,
        Child::Secret(o) => one(client, namespace, o).await,
        Child::ConfigMap(o) => one(client, namespace, o).await,
        Child::Service(o) => one(client, namespace, o).await,
        Child::StatefulSet(o) => one(client, namespace, o).await,
        Child::PodDisruptionBudget(o) => one(client, namespace, o).await,
        Child::Deployment(o) => one(client, namespace, o).await,
        Child::PodMonitor(o) => one(client, namespace, o).await,
        Child::PersistentVolumeClaim(o) => one(client, namespace, o).await,
    }
}

async fn one<K>(client: &Client, namespace: &str, obj: &K) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    // Forced: the controller is the only writer of the fields it sets; a
    // conflict means someone edited a child by hand, and the manifest wins.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{desired, test_cluster, test_credentials};
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use std::sync::{Arc, Mutex};

    /// What the stand-in API server saw: method, path and query, content
    /// type, body.
    type Seen = Arc<Mutex<Vec<(String, String, String, serde_json::Value)>>>;

    /// An API server that answers every patch with the object it was sent,
    /// as a server-side apply of a new object does.
    fn echo_server(seen: Seen) -> Client {
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let content_type = parts.headers[http::header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .to_string();
                seen.lock().unwrap().push((
                    parts.method.to_string(),
                    parts.uri.to_string(),
                    content_type,
                    json,
                ));
                Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::new(bytes)))
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn every_child_is_server_side_applied_under_one_field_manager() {
        let seen = Seen::default();
        let client = echo_server(seen.clone());
        let c = test_cluster("main");
        let children = desired(&c, &test_credentials(&c)).unwrap();
        for child in &children {
            apply(&client, "db", child).await.unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), children.len());
        for ((method, uri, content_type, body), child) in seen.iter().zip(&children) {
            assert_eq!(method, "PATCH");
            assert_eq!(content_type, "application/apply-patch+yaml");
            assert!(uri.contains("/namespaces/db/"), "{uri}");
            assert!(uri.contains("fieldManager=pgwolf-controller"), "{uri}");
            assert!(uri.contains("force=true"), "{uri}");
            assert_eq!(body, &serde_json::to_value(child).unwrap(), "{uri}");
        }
        let uris: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        assert!(uris
            .iter()
            .any(|u| u.starts_with("/api/v1/namespaces/db/services/main?")));
        assert!(uris
            .iter()
            .any(|u| u.starts_with("/apis/apps/v1/namespaces/db/statefulsets/main?")));
    }
}
