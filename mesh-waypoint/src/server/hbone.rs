//! HBONE termination: each CONNECT (`:authority` = the service VIP:port)
//! becomes one end of an in-memory pipe; hyper serves the other end with
//! the tunnel's authority and the peer's identity attached to every
//! request in it.
use std::sync::Arc;

use mesh_hbone::{ConnectHandler, ConnectRequest, HandlerFuture, RelayOutcome};
use tokio::sync::watch;

use super::source::{verified_source, Workloads};
use crate::{
    route::{Downstream, Proxy},
    telemetry::Peer,
    upstream::Directory,
};

/// Bytes buffered per direction in a tunnel's pipe.
const PIPE_BUFFER: usize = 64 * 1024;

pub struct TunnelHandler {
    proxy: Arc<Proxy>,
    workloads: Arc<dyn Workloads>,
    shutdown: watch::Receiver<bool>,
}

impl TunnelHandler {
    /// Serves tunnels with `proxy`; `workloads` verifies source addresses.
    pub fn new(
        proxy: Arc<Proxy>,
        workloads: Arc<dyn Workloads>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        TunnelHandler {
            proxy,
            workloads,
            shutdown,
        }
    }
}

/// The downstream facts of a tunnel. The source is the pod the source
/// node's agent names (else the TCP peer), when verified against `dir`;
/// it is both Envoy's remote and direct remote address, as in Istio's
/// waypoint, where the tunnel's inner connection comes from the pod.
pub fn downstream(req: &ConnectRequest, dir: &Directory) -> Downstream {
    let claimed = req.forwarded_for().unwrap_or(req.peer_addr.ip());
    let source = verified_source(dir, &req.peer, claimed);
    if source.is_none() {
        tracing::debug!(
            peer = %req.peer,
            %claimed,
            "tunnel source address not verified: not a workload of the peer's identity"
        );
    }
    Downstream {
        peer: Peer {
            principal: Some(req.peer.to_string()),
            ip: source,
        },
        direct_ip: source,
        tunnel_authority: Some(req.authority),
        destination: Some(req.authority),
        tls: false,
    }
}

impl ConnectHandler for TunnelHandler {
    fn handle(&self, request: ConnectRequest) -> HandlerFuture {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        let downstream = downstream(&request, &self.workloads.directory());
        tracing::debug!(
            peer = %request.peer,
            authority = %request.authority,
            source = ?downstream.peer.ip,
            "HBONE tunnel accepted"
        );
        tokio::spawn(super::conn::serve(
            ours,
            self.proxy.clone(),
            downstream,
            self.shutdown.clone(),
        ));
        Box::pin(async move { Ok(Box::new(theirs) as Box<dyn mesh_hbone::Upstream>) })
    }

    fn finished(&self, request: &ConnectRequest, outcome: &RelayOutcome) {
        tracing::debug!(
            peer = %request.peer,
            authority = %request.authority,
            bytes_in = outcome.bytes_in,
            bytes_out = outcome.bytes_out,
            "HBONE tunnel closed"
        );
    }
}
