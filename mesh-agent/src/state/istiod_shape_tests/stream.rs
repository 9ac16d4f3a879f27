//! The fixture over a real Delta ADS stream: a scripted in-process server
//! pushes the Address and Authorization resources as wire bytes, the
//! agent's xDS client (mesh_xds) must ACK both responses — an Address of an
//! unknown kind and undeclared fields NACK nothing — and the view the agent
//! builds from the client's snapshot (crate::state::xds::view) is the one
//! `check_view` expects.
use std::{net::SocketAddr, time::Duration};

use mesh_xds::{
    proto::envoy_discovery::{
        aggregated_discovery_service_server::{
            AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
        },
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    },
    Backoff, XdsClient, XdsClientConfig, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tonic::{
    codegen::tokio_stream::wrappers::ReceiverStream, transport::server::TcpIncoming, Request,
    Response, Status, Streaming,
};

use super::{check_dump, check_view};
use crate::state::istiod_shape::{self as shape, resource};

const LIMIT: Duration = Duration::from_secs(10);

type Responses = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

/// Hands each client stream to the test.
struct Scripted {
    streams: mpsc::UnboundedSender<(Streaming<DeltaDiscoveryRequest>, Responses)>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Scripted {
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        _req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("delta only"))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let _ = self.streams.send((req.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn next(requests: &mut Streaming<DeltaDiscoveryRequest>) -> DeltaDiscoveryRequest {
    tokio::time::timeout(LIMIT, requests.message())
        .await
        .expect("a request in time")
        .expect("stream healthy")
        .expect("stream open")
}

/// Pushes `resources` of `type_url` with `nonce` and returns the client's
/// answer for that type.
async fn push(
    requests: &mut Streaming<DeltaDiscoveryRequest>,
    responses: &Responses,
    type_url: &str,
    nonce: &str,
    resources: Vec<(String, Vec<u8>)>,
) -> DeltaDiscoveryRequest {
    let response = DeltaDiscoveryResponse {
        type_url: type_url.into(),
        nonce: nonce.into(),
        system_version_info: "istiod-1".into(),
        resources: resources
            .into_iter()
            .map(|(name, bytes)| resource(type_url, &name, bytes))
            .collect(),
        ..Default::default()
    };
    responses.send(Ok(response)).await.unwrap();
    next(requests).await
}

#[tokio::test]
async fn istiod_shaped_stream_is_acked_and_builds_the_view() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(Scripted {
                streams: streams_tx,
            }))
            .serve_with_incoming_shutdown(
                TcpIncoming::from_listener(listener, true, None).unwrap(),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let mut cfg = XdsClientConfig::new(format!("http://{addr}"), "n1");
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (client, mut snapshots) = XdsClient::spawn(cfg);

    let (mut requests, responses) = tokio::time::timeout(LIMIT, streams.recv())
        .await
        .expect("the client connects")
        .unwrap();
    let mut subscribed: Vec<String> = Vec::new();
    for _ in 0..2 {
        subscribed.push(next(&mut requests).await.type_url);
    }
    subscribed.sort();
    assert_eq!(subscribed, [AUTHORIZATION_TYPE_URL, ADDRESS_TYPE_URL]);

    for (type_url, nonce, resources) in [
        (ADDRESS_TYPE_URL, "address-1", shape::addresses()),
        (AUTHORIZATION_TYPE_URL, "authz-1", shape::authorizations()),
    ] {
        let answer = push(&mut requests, &responses, type_url, nonce, resources).await;
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
    let _ = stop_server.send(());
    drop(responses);
    tokio::time::timeout(LIMIT, server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
