//! The plain HTTP listener (`--http-addr`, Envoy's 0.0.0.0:15080): the
//! same routes, virtual host chosen by `Host`, no peer identity.
use std::sync::Arc;

use tokio::{net::TcpListener, sync::watch};

use crate::{
    route::{Downstream, Proxy},
    telemetry::Peer,
};

/// Accepts until `shutdown` turns true, then returns once every open
/// connection has finished its in-flight requests (the caller bounds the
/// wait with its drain timeout).
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    let local = listener.local_addr().ok();
    let mut stop = shutdown.clone();
    let mut conns: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = super::stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let downstream = Downstream {
            peer: Peer {
                principal: None,
                ip: Some(peer.ip()),
            },
            direct_ip: Some(peer.ip()),
            tunnel_authority: None,
            destination: local,
        };
        conns.spawn(super::conn::serve(
            tcp,
            proxy.clone(),
            downstream,
            shutdown.clone(),
        ));
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
}
