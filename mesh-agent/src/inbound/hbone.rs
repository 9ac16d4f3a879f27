//! The HBONE server (port 15008): terminates mTLS + HTTP/2 CONNECT from
//! peers, checks the tunnel targets a mesh pod of this node whose identity
//! is the one the peer asked for (TLS SNI), and connects to the pod.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::StatusCode;
use mesh_hbone::{ConnectHandler, ConnectRequest, HandlerFuture, RelayOutcome, Upstream};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::{net::TcpSocket, sync::watch};

use crate::{mesh::route::MeshView, state::connections::ConnectionStats};

pub struct InboundHandler {
    pub view: watch::Receiver<Arc<MeshView>>,
    pub stats: Arc<ConnectionStats>,
    pub socket_mark: u32,
}

async fn connect_pod(dst: SocketAddr, mark: u32) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if dst.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    setsockopt(&socket, sockopt::Mark, &mark)?;
    socket.set_nodelay(true)?;
    tokio::time::timeout(Duration::from_secs(10), socket.connect(dst))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

impl ConnectHandler for InboundHandler {
    fn handle(&self, request: ConnectRequest) -> HandlerFuture {
        let view = self.view.borrow().clone();
        let mark = self.socket_mark;
        Box::pin(async move {
            let target = view
                .workload_by_ip(request.authority.ip())
                .filter(|w| w.mesh && w.node == view.node);
            let Some(target) = target else {
                tracing::info!(
                    peer = %request.peer,
                    authority = %request.authority,
                    "inbound HBONE refused: not a mesh pod of this node"
                );
                return Err(StatusCode::NOT_FOUND);
            };
            if target.identity != request.local_identity {
                tracing::warn!(
                    peer = %request.peer,
                    asked_for = %request.local_identity,
                    authority = %request.authority,
                    "inbound HBONE refused: identity does not match the destination pod"
                );
                return Err(StatusCode::FORBIDDEN);
            }
            match connect_pod(request.authority, mark).await {
                Ok(stream) => Ok(Box::new(stream) as Box<dyn Upstream>),
                Err(error) => {
                    tracing::info!(authority = %request.authority, %error, "pod refused the connection");
                    Err(StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        })
    }

    fn finished(&self, request: &ConnectRequest, outcome: &RelayOutcome) {
        let mut open = self.stats.open(request.peer_addr, request.authority);
        open.direction = "inbound";
        open.route = "hbone";
        open.source_identity = request.peer.to_string();
        open.destination_identity = request.local_identity.to_string();
        self.stats.accepted();
        let error = outcome.error.as_ref().map(ToString::to_string);
        self.stats
            .finish(open, outcome.bytes_in, outcome.bytes_out, error);
    }
}
