//! Plain TCP to the destination itself: passthrough (outside the mesh) and
//! same-node delivery (a mesh pod of this node, already authorized). Bytes
//! move through relay.rs.
use std::net::SocketAddr;

use mesh_hbone::Identity;
use tokio::net::TcpStream;

use super::{
    proxy::{connect, reset},
    relay,
};
use crate::{
    metrics::LiveBytes,
    state::{inputs::ProxyInputs, outcome::ConnError},
};

/// Who is at the other end.
pub enum Destination {
    /// Outside the mesh (passthrough).
    Outside,
    /// A mesh pod of this node, authorized for `source` (the client pod's
    /// identity, if it has one); registered with the live connections so a
    /// policy change may close it.
    LocalPod { source: Option<Identity> },
}

/// Connects to `dst` and relays until both sides are done: `(sent,
/// received)` or why it failed; `live` counts the bytes as they move.
pub async fn carry(
    mut client: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    to: Destination,
    inputs: &ProxyInputs,
    id: u64,
    live: &LiveBytes,
) -> Result<(u64, u64), ConnError> {
    let _ = client.set_nodelay(true);
    let mut upstream = match connect(dst, &inputs.settings).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::info!(src = %peer, dst = %dst, %error, "upstream connect failed");
            reset(client);
            return Err(ConnError::Connect(error));
        }
    };
    // Registered until the relay ends: a policy change may close it.
    let _live = match to {
        Destination::Outside => None,
        Destination::LocalPod { source } => inputs
            .live
            .register(Some(peer.ip()), source.as_ref(), dst, &[&client, &upstream])
            .map_err(
                |error| tracing::warn!(%error, "cannot track the connection for policy updates"),
            )
            .ok(),
    };
    tracing::debug!(id, src = %peer, dst = %dst, "proxying");
    match relay::relay(
        &mut client,
        &mut upstream,
        inputs.settings.buffer_size,
        live,
    )
    .await
    {
        Ok((sent, received)) => {
            tracing::debug!(id, src = %peer, dst = %dst, sent, received, "closed");
            Ok((sent, received))
        }
        Err(error) => {
            tracing::debug!(id, src = %peer, dst = %dst, %error, "ended with error");
            Err(ConnError::Relay(error))
        }
    }
}
