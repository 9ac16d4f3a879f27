//! The HBONE servers' handler (port 15008): terminates mTLS + HTTP/2
//! CONNECT from peers, checks the tunnel targets a mesh pod of this node
//! whose identity is the one the server showed (a pod's own listener,
//! inbound/pods.rs, serves that pod only; the node listener, the identity
//! the client named by SNI), authorizes it (hop ④: the pod's authorization
//! policies; a denial answers 403), and connects to the pod.
//!
//! Each tunnel is a connection in `ConnectionStats` from the moment it is
//! asked for: opened in `handle` (labelled for telemetry there), finished
//! in `handle` when refused, else in `finished` (found again by the
//! request's id). If the stream vanishes in between (client cancels, 200
//! cannot be sent), a drop guard finishes it, so nothing stays "active".
//! The tunnel's bytes are the ones mesh-hbone's server counts into
//! [`ConnectRequest::live`] as it relays: the connection's live bytes, so
//! `reporter="destination"` byte counters grow while the tunnel is open.
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use http::StatusCode;
use mesh_hbone::{ConnectHandler, ConnectRequest, HandlerFuture, RelayOutcome, Upstream};

use crate::{
    metrics::labels::ConnLabels,
    outbound::proxy::connect,
    policy::{live::LiveGuard, Conn, Verdict},
    state::{
        connections::{ConnectionStats, Open},
        inputs::ProxyInputs,
        outcome::{Carried, ConnError, Direction},
        view::MeshView,
    },
};

pub struct InboundHandler {
    /// The view, stats, live connections and settings (socket mark,
    /// connect timeout) it works from.
    pub inputs: Arc<ProxyInputs>,
    /// Tunnels accepted by `handle`, waiting for `finished`, by request id.
    pub relaying: Arc<std::sync::Mutex<HashMap<u64, Open>>>,
    /// The pod whose own listener this handler serves: tunnels to any
    /// other address are refused. `None` for the node listener.
    pub pod: Option<IpAddr>,
}

impl InboundHandler {
    /// The node listener's handler: any local mesh pod.
    pub fn new(inputs: Arc<ProxyInputs>) -> Self {
        Self {
            inputs,
            relaying: Arc::default(),
            pod: None,
        }
    }

    /// The handler of `pod`'s own listener.
    pub fn for_pod(inputs: Arc<ProxyInputs>, pod: IpAddr) -> Self {
        Self {
            pod: Some(pod),
            ..Self::new(inputs)
        }
    }
}

/// An inbound connection being decided; finished with `error` if dropped
/// before [`Pending::refuse`] or [`Pending::relaying`] took it.
struct Pending {
    stats: Arc<ConnectionStats>,
    open: Option<Open>,
}

impl Pending {
    fn open(&mut self) -> &mut Open {
        self.open.as_mut().expect("taken only by consuming methods")
    }

    fn refuse(mut self, route: Carried, error: ConnError) {
        if let Some(mut open) = self.open.take() {
            open.route = route;
            self.stats.finish(open, 0, 0, Some(error));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            self.stats.finish(open, 0, 0, Some(ConnError::Cancelled));
        }
    }
}

/// Finishes a tunnel `finished` never saw (the stream died before the
/// relay started); dropped with the upstream stream.
struct Unreported {
    id: u64,
    stats: Arc<ConnectionStats>,
    relaying: Arc<std::sync::Mutex<HashMap<u64, Open>>>,
}

impl Drop for Unreported {
    fn drop(&mut self) {
        let open = self
            .relaying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        if let Some(open) = open {
            self.stats.finish(open, 0, 0, Some(ConnError::TunnelClosed));
        }
    }
}

/// The pod connection, carrying the guard above and its registration
/// with the live connections policy may close.
struct Tracked {
    stream: tokio::net::TcpStream,
    _guard: Unreported,
    _live: Option<LiveGuard>,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The source pod address: the tunnel's TCP source when the mesh knows it
/// as a workload with the peer's identity (a tunnel opened from the source
/// pod's namespace, ours or ztunnel's), else the one in `forwarded`, under
/// the same condition (an agent speaks for its own pods only).
fn source_ip(view: &MeshView, request: &ConnectRequest) -> Option<IpAddr> {
    let known = |ip: IpAddr| {
        view.workload_by_ip(ip)
            .is_some_and(|w| w.identity == request.peer)
    };
    let tcp = request.peer_addr.ip();
    if known(tcp) {
        return Some(tcp);
    }
    request.forwarded_for().filter(|ip| known(*ip))
}

impl ConnectHandler for InboundHandler {
    fn handle(&self, request: ConnectRequest) -> HandlerFuture {
        let inputs = Arc::clone(&self.inputs);
        let view = inputs.view.borrow().clone();
        let stats = Arc::clone(&inputs.stats);
        let relaying = Arc::clone(&self.relaying);
        let own_pod = self.pod;
        Box::pin(async move {
            stats.accepted();
            let mut open = stats.open(request.peer_addr, request.authority);
            open.direction = Direction::Inbound;
            open.route = Carried::Hbone;
            open.upstream = Some(request.authority);
            open.source_identity = request.peer.to_string();
            open.destination_identity = request.local_identity.to_string();
            // The server counts the tunnel's bytes here as it relays them:
            // the metrics read them while the tunnel is open.
            open.live = Arc::clone(&request.live);
            let mut pending = Pending {
                stats: Arc::clone(&stats),
                open: Some(open),
            };
            let target = view
                .workload_by_ip(request.authority.ip())
                .filter(|w| w.mesh && w.node == view.node)
                .filter(|w| own_pod.is_none_or(|pod| w.ips.contains(&pod)));
            let candidates: Vec<IpAddr> = request
                .forwarded_for()
                .into_iter()
                .chain([request.peer_addr.ip()])
                .collect();
            let labels = ConnLabels::inbound(
                &view,
                &request.peer,
                &candidates,
                target,
                request.authority.port(),
            );
            stats.begin(pending.open(), labels);
            let Some(target) = target else {
                tracing::info!(
                    peer = %request.peer,
                    authority = %request.authority,
                    "inbound HBONE refused: not a mesh pod of this node"
                );
                pending.refuse(Carried::Refused, ConnError::NotLocalPod);
                return Err(StatusCode::NOT_FOUND);
            };
            if target.identity != request.local_identity {
                tracing::warn!(
                    peer = %request.peer,
                    asked_for = %request.local_identity,
                    authority = %request.authority,
                    "inbound HBONE refused: identity does not match the destination pod"
                );
                pending.refuse(
                    Carried::Refused,
                    ConnError::WrongIdentity(request.local_identity.clone()),
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
                pending.refuse(Carried::Denied, ConnError::Denied { policy });
                return Err(StatusCode::FORBIDDEN);
            }
            match connect(request.authority, &inputs.settings).await {
                Ok(stream) => {
                    let open = pending.open.take().expect("still pending");
                    relaying
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(request.id, open);
                    let guard = Unreported {
                        id: request.id,
                        stats,
                        relaying,
                    };
                    // Registered while it lives: a policy change may close it.
                    let live = inputs
                        .live
                        .register(src_ip, Some(&request.peer), request.authority, &[&stream])
                        .map_err(|error| {
                            tracing::warn!(%error, "cannot track the connection for policy updates");
                        })
                        .ok();
                    Ok(Box::new(Tracked {
                        stream,
                        _guard: guard,
                        _live: live,
                    }) as Box<dyn Upstream>)
                }
                Err(error) => {
                    tracing::info!(authority = %request.authority, %error, "pod refused the connection");
                    pending.refuse(Carried::Hbone, ConnError::Connect(error));
                    Err(StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        })
    }

    fn finished(&self, request: &ConnectRequest, outcome: &RelayOutcome) {
        let open = self
            .relaying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.id);
        let Some(open) = open else {
            return;
        };
        // The outcome keeps its error; the record gets one with the same
        // kind and text.
        let error = outcome
            .error
            .as_ref()
            .map(|e| ConnError::Relay(std::io::Error::new(e.kind(), e.to_string())));
        self.inputs
            .stats
            .finish(open, outcome.bytes_in, outcome.bytes_out, error);
    }
}
