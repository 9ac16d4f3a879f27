//! The plain HTTP listener (`--http-addr`, Envoy's 0.0.0.0:15080): the
//! same routes, virtual host chosen by `Host`, no peer identity.
use std::sync::Arc;

use tokio::{net::TcpListener, sync::watch};

use crate::route::{Downstream, Proxy};

/// Open connections in total and per client address.
const PLAIN_LIMITS: mesh_admin::listen::Limits = mesh_admin::listen::Limits {
    max_connections: 16_384,
    max_per_source: Some(1024),
};

/// Accepts until `shutdown` turns true, then returns once every open
/// connection has finished its in-flight requests (the caller bounds the
/// wait with its drain timeout).
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    let local = listener.local_addr().ok();
    let mut stop = shutdown.clone();
    let mut conns: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    // Connection caps and accept back-off (mesh-admin's accept loop).
    let mut listener = mesh_admin::listen::Listener::new(listener, PLAIN_LIMITS, "plain HTTP");
    loop {
        let (tcp, peer, permit) = tokio::select! {
            a = listener.accept() => (a.stream, a.peer, a.permit),
            () = super::stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let downstream = Downstream::tcp(peer.ip(), local);
        let conn = super::conn::serve(tcp, proxy.clone(), downstream, shutdown.clone());
        conns.spawn(async move {
            conn.await;
            drop(permit);
        });
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
    }
    tracing::info!(
        open = conns.len(),
        "plain HTTP listener stopped accepting; draining"
    );
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use tokio::sync::{mpsc, Notify};

    use super::*;
    use crate::{
        body::{self, Body},
        config::{fault::FaultConfig, HttpFilter},
        route::{testing::*, Deps},
        upstream::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse},
    };

    /// Answers 200 once released; tells the test when a request arrived.
    struct Gate {
        arrived: mpsc::UnboundedSender<()>,
        release: Arc<Notify>,
    }

    impl Upstream for Gate {
        fn send(
            &self,
            _cluster: &str,
            _req: http::Request<Body>,
            _ctx: SendContext,
        ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
            let _ = self.arrived.send(());
            let release = self.release.clone();
            Box::pin(async move {
                release.notified().await;
                Ok(UpstreamResponse {
                    response: http::Response::new(body::full("done")),
                    endpoint: "127.0.0.1:1".parse().unwrap(),
                    workload: None,
                })
            })
        }

        fn retry_permit(&self, _cluster: &str) -> Option<RetryPermit> {
            None
        }
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_requests_finish() {
        let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let cfg = active(
            &reviews(vec![route("r", prefix("/"), to_cluster("c"))]),
            vec![
                HttpFilter::Fault(Arc::new(FaultConfig::default())),
                HttpFilter::Router,
            ],
        );
        let gate = Arc::new(Gate {
            arrived: arrived_tx,
            release: release.clone(),
        });
        let proxy = Proxy::new(Arc::new(cfg), Deps::new(gate));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, proxy, stop_rx));

        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri("/")
            .header("host", "reviews:9080")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let in_flight = tokio::spawn(send.send_request(req));
        arrived.recv().await.unwrap();

        stop.send_replace(true);
        tokio::task::yield_now().await;
        assert!(!server.is_finished(), "waits for the open request");
        release.notify_one();
        let resp = in_flight.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "done");
        server.await.unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    }

    /// Answers like a gRPC server: a data frame, then `grpc-status` trailers.
    struct Grpc;

    impl Upstream for Grpc {
        fn send(
            &self,
            _cluster: &str,
            req: http::Request<Body>,
            _ctx: SendContext,
        ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
            Box::pin(async move {
                let got = crate::route::buffer::collect(req.into_body())
                    .await
                    .unwrap();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "7".parse().unwrap());
                let frames = [
                    Ok::<_, crate::body::BoxError>(http_body::Frame::data(got)),
                    Ok(http_body::Frame::trailers(trailers)),
                ];
                let b = body::boxed(http_body_util::StreamBody::new(futures::stream::iter(
                    frames,
                )));
                let mut resp = http::Response::new(b);
                resp.headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
                Ok(UpstreamResponse {
                    response: resp,
                    endpoint: "127.0.0.1:1".parse().unwrap(),
                    workload: None,
                })
            })
        }

        fn retry_permit(&self, _cluster: &str) -> Option<RetryPermit> {
            None
        }
    }

    #[tokio::test]
    async fn h2_grpc_trailers_pass_through_and_are_recorded() {
        let cfg = active(
            &reviews(vec![route("g", prefix("/"), to_cluster("c"))]),
            vec![HttpFilter::Router],
        );
        let recorder = Arc::new(Recorder::default());
        let mut deps = Deps::new(Arc::new(Grpc));
        deps.observer = recorder.clone();
        let proxy = Proxy::new(Arc::new(cfg), deps);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, proxy, stop_rx));

        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method("POST")
            .uri("http://reviews:9080/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(Bytes::from_static(
                b"\0\0\0\0\x01x",
            )))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "7");
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"\0\0\0\0\x01x"));
        tokio::task::yield_now().await;
        let rec = &recorder.records()[0];
        assert_eq!((rec.protocol, rec.grpc_status), ("grpc", Some(7)));
        assert_eq!(rec.path, "/pkg.Svc/Call");
    }
}
