//! A scripted Delta ADS server for tests (cargo feature `test-ads`): it
//! answers the state-of-the-world RPC with UNIMPLEMENTED and hands every
//! Delta stream to the test as a [`ScriptedStream`] (the gRPC metadata the
//! client sent, its requests, a sender for responses), so the test plays
//! the control plane one message at a time.
//!
//! [`serve`] runs it on a TCP listener; [`ScriptedAds::service`] gives the bare
//! service for other transports (TLS). Every wait is bounded by
//! [`LIMIT`] and panics with what it waited for: this is test code.
use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{metadata::MetadataMap, Request, Response, Status, Streaming};

use crate::proto::envoy_discovery::{
    aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    },
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

/// How long any wait of this module lasts before it panics.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Responses queued per stream before [`ScriptedStream::push`] waits for
/// the client to read.
const QUEUE: usize = 16;

/// The sending half of one stream's responses.
pub type Responses = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {LIMIT:?}: {what}"))
}

/// One client Delta ADS stream as the server sees it. Dropping it (the
/// response sender) ends the server's side of the stream.
pub struct ScriptedStream {
    /// The gRPC metadata of the call (headers such as `authorization`).
    pub metadata: MetadataMap,
    /// What the client sends.
    pub requests: Streaming<DeltaDiscoveryRequest>,
    /// Where the test's responses (or a closing status) go.
    pub responses: Responses,
}

impl ScriptedStream {
    /// The client's next request; panics if none comes within [`LIMIT`]
    /// or the stream ends or fails.
    pub async fn next(&mut self) -> DeltaDiscoveryRequest {
        bounded("the next request", self.requests.message())
            .await
            .expect("stream healthy")
            .expect("stream open")
    }

    /// Sends `response` to the client; panics if the client is gone.
    pub async fn push(&self, response: DeltaDiscoveryResponse) {
        bounded("room to push", self.responses.send(Ok(response)))
            .await
            .expect("the client reads the stream");
    }
}

/// The ADS service: SotW answered UNIMPLEMENTED, each Delta stream handed
/// over on the channel [`ScriptedAds::service`] returns.
pub struct ScriptedAds {
    streams: mpsc::UnboundedSender<ScriptedStream>,
}

impl ScriptedAds {
    /// The service and the receiver of its streams.
    pub fn service() -> (
        AggregatedDiscoveryServiceServer<Self>,
        mpsc::UnboundedReceiver<ScriptedStream>,
    ) {
        let (streams, rx) = mpsc::unbounded_channel();
        (
            AggregatedDiscoveryServiceServer::new(ScriptedAds { streams }),
            rx,
        )
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for ScriptedAds {
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
        let (responses, rx) = mpsc::channel(QUEUE);
        let metadata = req.metadata().clone();
        let _ = self.streams.send(ScriptedStream {
            metadata,
            requests: req.into_inner(),
            responses,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A [`ScriptedAds`] served on a TCP listener. Dropping it aborts the
/// server; [`TestAds::stop`] stops it gracefully.
pub struct TestAds {
    addr: SocketAddr,
    streams: mpsc::UnboundedReceiver<ScriptedStream>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Serves a [`ScriptedAds`] on `listener` (plaintext HTTP/2) from a task of
/// the current tokio runtime.
pub fn serve(listener: TcpListener) -> TestAds {
    let addr = listener.local_addr().expect("a bound listener");
    let (service, streams) = ScriptedAds::service();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .timeout(Duration::from_secs(60))
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    TestAds {
        addr,
        streams,
        shutdown: Some(shutdown),
        task,
    }
}

impl TestAds {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next client stream; panics if none opens within [`LIMIT`].
    pub async fn accept(&mut self) -> ScriptedStream {
        bounded("a client stream", self.streams.recv())
            .await
            .expect("the server runs")
    }

    /// The next client stream, however long it takes; `None` once the
    /// server is gone. For scripts that serve until the test ends.
    pub async fn next_stream(&mut self) -> Option<ScriptedStream> {
        self.streams.recv().await
    }

    /// Ends each of the `open` streams with UNAVAILABLE, stops the server
    /// gracefully and returns the address it listened on. Panics if it
    /// does not stop within [`LIMIT`] or failed.
    pub async fn stop(mut self, open: Vec<ScriptedStream>) -> SocketAddr {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        for s in open {
            let _ = s
                .responses
                .send(Err(Status::unavailable("restarting")))
                .await;
        }
        bounded("the server stops", &mut self.task)
            .await
            .expect("the server task ends")
            .expect("the server served");
        self.addr
    }
}

impl Drop for TestAds {
    fn drop(&mut self) {
        self.task.abort();
    }
}
