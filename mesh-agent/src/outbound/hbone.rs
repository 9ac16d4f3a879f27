//! Hop ③: a captured connection carried over HBONE (mTLS with the source
//! pod's certificate, no SNI, HTTP/2 CONNECT) to the destination pod's own
//! listener (`<pod IP>:15008`) or the service's waypoint, over a TCP
//! connection opened from the source pod's network namespace when the
//! agent has it (capture::pod_netns), so the peer sees the pod's address.
use std::{net::SocketAddr, sync::Arc};

use mesh_hbone::{Counted, End, HboneClient, Identity, SocketOrigin};
use tokio::net::TcpStream;

use super::proxy::reset;
use crate::{metrics::LiveBytes, state::outcome::ConnError};

/// Where the tunnel goes and who each end is.
pub struct Tunnel<'a> {
    /// The destination pod's (or waypoint's) HBONE address.
    pub gateway: SocketAddr,
    /// CONNECT's `:authority`.
    pub authority: SocketAddr,
    /// The source pod's identity, presented.
    pub src: &'a Identity,
    /// The identity expected at `gateway`.
    pub dst: &'a Identity,
}

/// Opens the tunnel and copies until both sides are done: `(sent,
/// received)` or why it failed; `live` counts the bytes as they move.
/// `hbone` is `None` without a control plane, where routing never chooses
/// HBONE.
pub async fn carry(
    client: TcpStream,
    peer: SocketAddr,
    to: Tunnel<'_>,
    hbone: Option<&HboneClient>,
    id: u64,
    live: &LiveBytes,
    origin: Option<Arc<dyn SocketOrigin>>,
) -> Result<(u64, u64), ConnError> {
    let Some(hbone) = hbone else {
        tracing::warn!(src = %peer, gateway = %to.gateway, "routed over HBONE without an HBONE client");
        reset(client);
        return Err(ConnError::NoHboneClient);
    };
    let _ = client.set_nodelay(true);
    let (gateway, authority) = (to.gateway, to.authority);
    let mut tunnel = match hbone
        .connect_via(to.src, gateway, to.dst, authority, Some(peer.ip()), origin)
        .await
    {
        Ok(tunnel) => tunnel,
        Err(error) => {
            tracing::info!(src = %peer, %gateway, %authority, %error, "HBONE connect failed");
            reset(client);
            return Err(ConnError::HboneConnect(error));
        }
    };
    tracing::debug!(id, src = %peer, %authority, %gateway, "proxying over HBONE");
    // mesh_hbone::relay hands the pod's reads to h2 and h2's frames to the
    // pod without an intermediate copy.
    let mut client = Counted::new(client, End::Source, live);
    mesh_hbone::relay(&mut client, &mut tunnel)
        .await
        .map_err(ConnError::Relay)
}
