//! A hand-driven Delta ADS stream for the server tests: requests written by
//! the test, responses read one by one, every wait bounded.
use std::{future::Future, net::SocketAddr, time::Duration};

use mesh_xds::proto::envoy_discovery::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// How long any one step may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// `f`, or a panic naming `what` after [`LIMIT`].
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// One Delta ADS stream with tonic's default 4 MiB message limit, as most
/// clients have.
pub struct RawStream {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
}

impl RawStream {
    pub async fn open(addr: SocketAddr) -> Self {
        // envoy-types' generated client has no `connect` shortcut.
        let channel = bounded(
            "connect",
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect(),
        )
        .await
        .unwrap();
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (requests, rx) = mpsc::channel(8);
        let responses = bounded(
            "open",
            client.delta_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await
        .unwrap()
        .into_inner();
        RawStream {
            requests,
            responses,
        }
    }

    pub async fn send(&self, req: DeltaDiscoveryRequest) {
        self.requests.send(req).await.unwrap();
    }

    /// The next response, or the status the stream ended with.
    pub async fn next(&mut self) -> Result<DeltaDiscoveryResponse, tonic::Status> {
        bounded("response", self.responses.message())
            .await
            .map(|r| r.expect("stream ended"))
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        self.next().await.unwrap()
    }
}
