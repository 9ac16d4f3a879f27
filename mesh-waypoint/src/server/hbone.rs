//! HBONE termination: each CONNECT (`:authority` = the service VIP:port)
//! becomes one end of an in-memory pipe; hyper serves the other end with
//! the tunnel's authority and the peer's identity attached to every
//! request in it.
use std::sync::Arc;

use mesh_hbone::{ConnectHandler, ConnectRequest, HandlerFuture, RelayOutcome};
use tokio::sync::watch;

use crate::{
    route::{Downstream, Proxy},
    telemetry::Peer,
};

/// Bytes buffered per direction in a tunnel's pipe.
const PIPE_BUFFER: usize = 64 * 1024;

pub struct TunnelHandler {
    pub proxy: Arc<Proxy>,
    pub shutdown: watch::Receiver<bool>,
}

/// The downstream facts of a tunnel.
pub fn downstream(req: &ConnectRequest) -> Downstream {
    Downstream {
        peer: Peer {
            principal: Some(req.peer.to_string()),
            // The source pod as the source node's agent names it; else
            // the agent itself.
            ip: req.forwarded_for().or(Some(req.peer_addr.ip())),
        },
        direct_ip: Some(req.peer_addr.ip()),
        tunnel_authority: Some(req.authority),
        destination: Some(req.authority),
    }
}

impl ConnectHandler for TunnelHandler {
    fn handle(&self, request: ConnectRequest) -> HandlerFuture {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        let downstream = downstream(&request);
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
