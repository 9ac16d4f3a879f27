//! The fixture over a real Delta ADS stream: a scripted in-process server
//! pushes the Address and Authorization resources as wire bytes, the
//! agent's xDS client (mesh_xds) must ACK both responses — an Address of an
//! unknown kind and undeclared fields NACK nothing — and the view the agent
//! builds from the client's snapshot (crate::state::xds::view) is the one
//! `check_view` expects.
use std::time::Duration;

use mesh_xds::{
    proto::envoy_discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse},
    test_ads::{self, ScriptedStream},
    Backoff, XdsClient, XdsClientConfig, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};
use tokio::net::TcpListener;

use super::{check_dump, check_view};
use crate::state::istiod_shape::{self as shape, resource};

const LIMIT: Duration = Duration::from_secs(10);

/// Pushes `resources` of `type_url` with `nonce` and returns the client's
/// answer for that type.
async fn push(
    stream: &mut ScriptedStream,
    type_url: &str,
    nonce: &str,
    resources: Vec<(String, Vec<u8>)>,
) -> DeltaDiscoveryRequest {
    stream
        .push(DeltaDiscoveryResponse {
            type_url: type_url.into(),
            nonce: nonce.into(),
            system_version_info: "istiod-1".into(),
            resources: resources
                .into_iter()
                .map(|(name, bytes)| resource(type_url, &name, bytes))
                .collect(),
            ..Default::default()
        })
        .await;
    stream.next().await
}

#[tokio::test]
async fn istiod_shaped_stream_is_acked_and_builds_the_view() {
    let mut ads = test_ads::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let mut cfg = XdsClientConfig::new(format!("http://{}", ads.addr()), "n1");
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (client, mut snapshots) = XdsClient::spawn(cfg);

    let mut stream = ads.accept().await;
    let mut subscribed: Vec<String> = Vec::new();
    for _ in 0..2 {
        subscribed.push(stream.next().await.type_url);
    }
    subscribed.sort();
    assert_eq!(subscribed, [AUTHORIZATION_TYPE_URL, ADDRESS_TYPE_URL]);

    for (type_url, nonce, resources) in [
        (ADDRESS_TYPE_URL, "address-1", shape::addresses()),
        (AUTHORIZATION_TYPE_URL, "authz-1", shape::authorizations()),
    ] {
        let answer = push(&mut stream, type_url, nonce, resources).await;
        assert_eq!(answer.type_url, type_url);
        assert_eq!(answer.response_nonce, nonce, "an answer to this push");
        assert!(
            answer.error_detail.is_none(),
            "{type_url} NACKed: {:?}",
            answer.error_detail
        );
    }

    let snapshot = tokio::time::timeout(LIMIT, async {
        loop {
            {
                let s = snapshots.borrow_and_update();
                if s.synced.contains(ADDRESS_TYPE_URL) && s.synced.contains(AUTHORIZATION_TYPE_URL)
                {
                    return s.clone();
                }
            }
            snapshots.changed().await.unwrap();
        }
    })
    .await
    .expect("both types applied");
    assert_eq!(snapshot.last_error, None);

    let view = crate::state::xds::view("n1", &snapshot);
    assert_eq!(view.skipped_addresses, 1, "the address of an unknown kind");
    check_view(&view);
    let policies: Vec<_> = snapshot.authorizations().map(|(_, p)| p.clone()).collect();
    check_dump(&view, &policies);

    client.stop().await;
    ads.stop(vec![stream]).await;
}
