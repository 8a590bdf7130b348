//! Leader election against kube-fake-client: one holder at a time, renewal
//! keeps it, expiry or release hands it over.

#[path = "support/fake_api.rs"]
mod fake_api;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use pgwolf_controller::lease::{release, try_acquire, Attempt, LeaseConfig};
use std::time::Duration;

fn candidate(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "pgwolf-system".into(),
        name: "pgwolf-controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(15),
    }
}

fn at(t0: Timestamp, secs: i64) -> Timestamp {
    t0.checked_add(SignedDuration::from_secs(secs)).unwrap()
}

async fn stored(client: &kube::Client) -> k8s_openapi::api::coordination::v1::LeaseSpec {
    Api::<Lease>::namespaced(client.clone(), "pgwolf-system")
        .get("pgwolf-controller")
        .await
        .unwrap()
        .spec
        .unwrap()
}

#[tokio::test]
async fn one_leader_until_it_stops_renewing() {
    let client = fake_api::client(vec![]).await;
    let (a, b) = (candidate("pod-a"), candidate("pod-b"));
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();

    assert_eq!(
        try_acquire(&client, &a, t0).await.unwrap(),
        Attempt::Leading
    );
    assert_eq!(
        try_acquire(&client, &b, at(t0, 1)).await.unwrap(),
        Attempt::Following(Some("pod-a".into()))
    );
    // a renews every few seconds; b never gets in.
    for s in [5, 10, 15, 20] {
        assert_eq!(
            try_acquire(&client, &a, at(t0, s)).await.unwrap(),
            Attempt::Leading
        );
        assert_eq!(
            try_acquire(&client, &b, at(t0, s + 1)).await.unwrap(),
            Attempt::Following(Some("pod-a".into()))
        );
    }
    let spec = stored(&client).await;
    assert_eq!(spec.renew_time.unwrap().0, at(t0, 20));
    assert_eq!(spec.acquire_time.unwrap().0, t0);
    assert_eq!(spec.lease_transitions, Some(0));

    // a stops (killed: no release). 15 s after its last renewal, still a's.
    assert_eq!(
        try_acquire(&client, &b, at(t0, 35)).await.unwrap(),
        Attempt::Following(Some("pod-a".into()))
    );
    // Past it, b takes over, and a, back, follows.
    assert_eq!(
        try_acquire(&client, &b, at(t0, 36)).await.unwrap(),
        Attempt::Leading
    );
    assert_eq!(
        try_acquire(&client, &a, at(t0, 37)).await.unwrap(),
        Attempt::Following(Some("pod-b".into()))
    );
    let spec = stored(&client).await;
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(spec.acquire_time.unwrap().0, at(t0, 36));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let client = fake_api::client(vec![]).await;
    let (a, b) = (candidate("pod-a"), candidate("pod-b"));
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();
    assert_eq!(
        try_acquire(&client, &a, t0).await.unwrap(),
        Attempt::Leading
    );

    // Only the holder can release: b's release leaves a leading.
    release(&client, &b).await.unwrap();
    assert_eq!(
        stored(&client).await.holder_identity.as_deref(),
        Some("pod-a")
    );

    release(&client, &a).await.unwrap();
    assert_eq!(
        try_acquire(&client, &b, at(t0, 1)).await.unwrap(),
        Attempt::Leading
    );
    assert_eq!(stored(&client).await.lease_transitions, Some(1));
}
