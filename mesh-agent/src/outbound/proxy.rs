//! One captured connection, from its original destination to its end: hop
//! ② decides where it goes (crate::route), then it is carried directly
//! (passthrough, or same-node delivery after hop ④ here: direct.rs,
//! crate::inbound::local) or over HBONE (hop ③: hbone.rs), or refused.
//! Every connection is opened in the stats on arrival and finished exactly
//! once, here, whatever path it took.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};

use super::{
    direct::{self, Destination},
    hbone,
};
use crate::{
    capture::fast_path::FastPath,
    inbound::local,
    metrics::labels::ConnLabels,
    route::{self, Route},
    state::{
        inputs::ProxyInputs,
        outcome::{Carried, ConnError},
    },
};

#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// SO_MARK on upstream sockets, so capture never loops them back.
    pub socket_mark: u32,
    pub buffer_size: usize,
    pub connect_timeout: Duration,
}

/// Closes with RST, so the pod sees "connection reset" rather than a clean EOF
/// it might take for a complete response.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(&stream, sockopt::Linger, &linger);
    drop(stream);
}

/// A marked (never captured), no-delay TCP connection to `dst`.
pub async fn connect(dst: SocketAddr, settings: &ProxySettings) -> std::io::Result<TcpStream> {
    let socket = if dst.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    setsockopt(&socket, sockopt::Mark, &settings.socket_mark)?;
    socket.set_nodelay(true)?;
    tokio::time::timeout(settings.connect_timeout, socket.connect(dst))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// The address of a ServiceEntry endpoint known by name, in the family of
/// the address the client dialled when it has one.
async fn resolve_endpoint(
    inputs: &ProxyInputs,
    host: &str,
    port: u16,
    prefer_v4: bool,
) -> Result<SocketAddr, ConnError> {
    let resolver = inputs
        .resolver
        .as_ref()
        .ok_or_else(|| ConnError::NoResolver {
            host: host.to_string(),
        })?;
    let ip = resolver
        .resolve(host, prefer_v4)
        .await
        .map_err(ConnError::Resolve)?;
    Ok(SocketAddr::new(ip, port))
}

/// Proxies `client` (from `peer`, meant for `dst`) to where the view routes
/// it; tunnels use sockets of the agent's own namespace.
#[cfg(test)]
pub async fn run(client: TcpStream, peer: SocketAddr, dst: SocketAddr, inputs: Arc<ProxyInputs>) {
    run_from(client, peer, dst, inputs, None, None).await;
}

/// Where the source pod's same-node pairs are cached once authorized
/// (capture/fast_path.rs).
pub struct FastPathGrant {
    pub map: Arc<FastPath>,
    /// The source pod's network namespace.
    pub netns_cookie: u64,
}

/// [`run`], opening an HBONE tunnel's connection from `origin` (the source
/// pod's namespace) when there is one, and caching an authorized same-node
/// pair in `fast_path` when given.
pub async fn run_from(
    client: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    inputs: Arc<ProxyInputs>,
    origin: Option<Arc<dyn mesh_hbone::SocketOrigin>>,
    fast_path: Option<FastPathGrant>,
) {
    let view = inputs.view.borrow().clone();
    let resolved = route::resolve(&view, peer.ip(), dst);
    let stats = &inputs.stats;
    let mut open = stats.open(peer, dst);
    open.upstream = resolved.endpoint();
    open.route = match &resolved.route {
        Route::Passthrough { .. } | Route::Resolve { .. } => Carried::Passthrough,
        Route::Local { .. } => Carried::Local,
        Route::Hbone { .. } => Carried::Hbone,
        Route::Refuse(_) => Carried::Refused,
    };
    stats.begin(&mut open, ConnLabels::outbound(&view, peer.ip(), &resolved));
    let id = open.id;
    let live = std::sync::Arc::clone(&open.live);
    let carried = match resolved.route {
        Route::Passthrough { dst: target, .. } => {
            direct::carry(
                client,
                peer,
                target,
                Destination::Outside,
                &inputs,
                id,
                &live,
            )
            .await
        }
        Route::Local { dst: target } => {
            // Same-node delivery: this agent is the destination's too, so
            // hop ④ happens here.
            match local::authorize(&view, peer, target) {
                Ok(allowed) => {
                    if let Some(dst) = &allowed.destination {
                        open.destination_identity = dst.to_string();
                    }
                    if let Some(src) = &allowed.source {
                        open.source_identity = src.to_string();
                    }
                    // Pod-addressed (no service to balance over) and pure:
                    // the pair's next connections may skip the agent.
                    if let (Some(grant), true) = (&fast_path, allowed.cacheable && target == dst) {
                        grant.map.allow(view.generation, grant.netns_cookie, target);
                    }
                    let to = Destination::LocalPod {
                        source: allowed.source,
                    };
                    direct::carry(client, peer, target, to, &inputs, id, &live).await
                }
                Err(error) => {
                    open.route = Carried::Denied;
                    reset(client);
                    Err(error)
                }
            }
        }
        Route::Hbone {
            gateway,
            authority,
            src,
            dst: dst_id,
        } => {
            open.source_identity = src.to_string();
            open.destination_identity = dst_id.to_string();
            let tunnel = hbone::Tunnel {
                gateway,
                authority,
                src: &src,
                dst: &dst_id,
            };
            hbone::carry(
                client,
                peer,
                tunnel,
                inputs.hbone.as_ref(),
                id,
                &live,
                origin,
            )
            .await
        }
        Route::Resolve { host, port } => {
            // A ServiceEntry endpoint known by name: resolved per
            // connection (the resolver caches for the records' TTL).
            match resolve_endpoint(&inputs, &host, port, dst.is_ipv4()).await {
                Ok(target) => {
                    open.upstream = Some(target);
                    direct::carry(
                        client,
                        peer,
                        target,
                        Destination::Outside,
                        &inputs,
                        id,
                        &live,
                    )
                    .await
                }
                Err(error) => {
                    tracing::info!(src = %peer, %dst, %host, %error, "endpoint name did not resolve");
                    reset(client);
                    Err(error)
                }
            }
        }
        Route::Refuse(reason) => {
            tracing::info!(src = %peer, %dst, %reason, "connection refused by routing");
            reset(client);
            Err(ConnError::NoRoute(reason))
        }
    };
    match carried {
        Ok((sent, received)) => stats.finish(open, sent, received, None),
        Err(error) => stats.finish(open, 0, 0, Some(error)),
    }
}
