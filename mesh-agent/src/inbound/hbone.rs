//! The HBONE server (port 15008): terminates mTLS + HTTP/2 CONNECT from
//! peers, checks the tunnel targets a mesh pod of this node whose identity
//! is the one the peer asked for (TLS SNI), authorizes it (hop ④: the
//! pod's authorization policies; a denial answers 403), and connects to
//! the pod.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use http::StatusCode;
use mesh_hbone::{ConnectHandler, ConnectRequest, HandlerFuture, RelayOutcome, Upstream};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::{net::TcpSocket, sync::watch};

use crate::{
    mesh::route::MeshView,
    policy::{
        live::{Guarded, LiveConnections},
        Conn, Verdict,
    },
    state::connections::ConnectionStats,
};

pub struct InboundHandler {
    pub view: watch::Receiver<Arc<MeshView>>,
    pub stats: Arc<ConnectionStats>,
    /// Connections policy may close later.
    pub live: Arc<LiveConnections>,
    pub socket_mark: u32,
}

/// The source pod address from `forwarded`, trusted only when the mesh
/// knows that address as a workload with the peer's identity (an agent
/// speaks for its own pods only).
fn source_ip(view: &MeshView, request: &ConnectRequest) -> Option<IpAddr> {
    let ip = request.forwarded_for()?;
    let w = view.workload_by_ip(ip)?;
    (w.identity == request.peer).then_some(ip)
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
        let stats = Arc::clone(&self.stats);
        let live = Arc::clone(&self.live);
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
            // Hop ④: authorization.
            let src_ip = source_ip(&view, &request);
            let conn = Conn {
                src_ip,
                src: Some(&request.peer),
                dst_ip: request.authority.ip(),
                dst_port: request.authority.port(),
            };
            let evaluation = view.policies.evaluate(target, &conn);
            crate::policy::log(&evaluation, target, &conn, "inbound");
            if let Verdict::Deny { policy } = evaluation.verdict {
                let source = SocketAddr::new(src_ip.unwrap_or(request.peer_addr.ip()), 0);
                let mut open = stats.open(source, request.authority);
                open.direction = "inbound";
                open.route = "denied";
                open.source_identity = request.peer.to_string();
                open.destination_identity = request.local_identity.to_string();
                stats.finish(open, 0, 0, Some(format!("denied by policy {policy}")));
                return Err(StatusCode::FORBIDDEN);
            }
            match connect_pod(request.authority, mark).await {
                Ok(stream) => {
                    match live.register(src_ip, Some(&request.peer), request.authority, &[&stream])
                    {
                        Ok(guard) => Ok(Box::new(Guarded::new(stream, guard)) as Box<dyn Upstream>),
                        Err(error) => {
                            tracing::warn!(%error, "cannot track the connection for policy updates");
                            Ok(Box::new(stream) as Box<dyn Upstream>)
                        }
                    }
                }
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
