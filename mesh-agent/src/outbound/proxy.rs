//! Plain TCP proxying of one captured connection: both directions, half-close
//! passed through (EOF on one side shuts down writes on the other), flow
//! control by the sockets themselves (a bounded pipe per direction; a slow
//! reader stops the copy, it never buffers without limit). See relay.rs for
//! how bytes move (small messages copied, bulk spliced).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};

use mesh_hbone::{HboneClient, Identity};

use crate::{
    mesh::route::{MeshView, Resolved, Route},
    metrics::labels::ConnLabels,
    policy::{live::LiveConnections, Conn, Verdict},
    state::connections::ConnectionStats,
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

async fn connect(dst: SocketAddr, settings: &ProxySettings) -> std::io::Result<TcpStream> {
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

const HBONE_COPY_BUFFER: usize = 64 * 1024;

/// What the mesh side adds to proxying: routing and the HBONE client.
pub struct MeshRuntime {
    pub view: tokio::sync::watch::Receiver<Arc<MeshView>>,
    pub hbone: HboneClient,
    pub store: Arc<mesh_hbone::CertStore>,
    /// Certificates obtained from the CA since start.
    pub issued: Arc<std::sync::atomic::AtomicU64>,
    pub xds: tokio::sync::watch::Receiver<Arc<mesh_xds::XdsSnapshot>>,
    /// Open connections to local pods, re-checked on policy change.
    pub live: Arc<crate::policy::live::LiveConnections>,
    /// What `deny_connect` holds and why.
    pub kernel_denies: Arc<std::sync::Mutex<Vec<crate::policy::kernel::KernelDeny>>>,
    /// The control plane's address, as configured.
    pub xds_address: String,
    /// Unix ms of the last xDS change applied to the view (0: none yet).
    pub xds_updated_unix_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl MeshRuntime {
    /// What `/stats/mesh` shows.
    pub fn admin_json(&self) -> serde_json::Value {
        let view = self.view.borrow().clone();
        let snapshot = self.xds.borrow().clone();
        let certs: Vec<serde_json::Value> = self
            .store
            .identities()
            .iter()
            .filter_map(|id| self.store.get(id))
            .map(|c| {
                let expires = c
                    .not_after()
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                serde_json::json!({
                    "identity": c.identity().to_string(),
                    "serial": c.serial(),
                    "not_after_unix": expires,
                })
            })
            .collect();
        let workloads: Vec<serde_json::Value> = view
            .workloads()
            .map(|w| {
                serde_json::json!({
                    "uid": w.uid, "identity": w.identity.to_string(), "node": w.node,
                    "ips": w.ips, "mesh": w.mesh,
                })
            })
            .collect();
        let kernel_denies: Vec<serde_json::Value> = self
            .kernel_denies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|d| {
                serde_json::json!({
                    "netns_cookie": d.key.netns_cookie,
                    "destination": crate::capture::enroll::unmapped(d.key.addr),
                    "port": d.key.port,
                    "policy": d.policy,
                })
            })
            .collect();
        let mut policies: Vec<String> = view
            .policies
            .all()
            .map(crate::policy::eval::policy_name)
            .collect();
        policies.sort();
        serde_json::json!({
            "node": view.node,
            "policies": policies,
            "kernel_denies": kernel_denies,
            "live_connections": self.live.len(),
            "closed_by_policy": self.live.closed(),
            "xds_connected": snapshot.connected,
            "xds_last_error": snapshot.last_error,
            "workloads": workloads,
            "services": view.service_count(),
            "certificates": certs,
            "certificates_issued": self.issued.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

pub async fn run(
    client: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    stats: Arc<ConnectionStats>,
    settings: ProxySettings,
    mesh: Option<Arc<MeshRuntime>>,
) {
    let view = mesh.as_ref().map(|m| m.view.borrow().clone());
    let resolved = match &view {
        Some(view) => view.resolve(peer.ip(), dst),
        None => Resolved {
            route: Route::Direct {
                dst,
                reason: "passthrough: no control plane configured",
            },
            service: None,
        },
    };
    let mut open = stats.open(peer, dst);
    open.upstream = resolved.endpoint();
    open.route = match &resolved.route {
        Route::Direct { reason, .. } if reason.starts_with("local") => "local",
        Route::Direct { .. } => "passthrough",
        Route::Hbone { .. } => "hbone",
        Route::Refuse { .. } => "refused",
    };
    let labels = ConnLabels::outbound(view.as_deref(), peer.ip(), &resolved);
    stats.begin(&mut open, labels);
    match resolved.route {
        Route::Direct { dst: target, .. } => {
            // Same-node delivery: this agent is the destination's too, so
            // hop ④ happens here.
            let mut track = None;
            if let (Some(mesh), Some(view), "local") = (&mesh, &view, open.route) {
                match authorize_local(view, peer, target) {
                    Ok((src, dst)) => {
                        if let Some(dst) = dst {
                            open.destination_identity = dst.to_string();
                        }
                        if let Some(src) = &src {
                            open.source_identity = src.to_string();
                        }
                        track = Some((Arc::clone(&mesh.live), src));
                    }
                    Err(policy) => {
                        open.route = "denied";
                        reset(client);
                        stats.finish(open, 0, 0, Some(format!("denied by policy {policy}")));
                        return;
                    }
                }
            }
            direct(client, peer, target, open, stats, settings, track).await;
        }
        Route::Hbone {
            gateway,
            authority,
            src,
            dst: dst_id,
        } => {
            let Some(mesh) = mesh else { return };
            open.source_identity = src.to_string();
            open.destination_identity = dst_id.to_string();
            let mut client = client;
            let _ = client.set_nodelay(true);
            let mut tunnel = match mesh
                .hbone
                .connect_from(&src, gateway, &dst_id, authority, Some(peer.ip()))
                .await
            {
                Ok(tunnel) => tunnel,
                Err(error) => {
                    tracing::info!(src = %peer, %gateway, %authority, %error, "HBONE connect failed");
                    reset(client);
                    stats.finish(open, 0, 0, Some(format!("connect: {error}")));
                    return;
                }
            };
            tracing::debug!(id = open.id, src = %peer, %authority, %gateway, "proxying over HBONE");
            // Userspace buffers (allocated per connection, unlike the splice
            // pipes): 64 KiB per direction, as on the HBONE server side.
            let size = HBONE_COPY_BUFFER;
            match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut tunnel, size, size)
                .await
            {
                Ok((sent, received)) => stats.finish(open, sent, received, None),
                Err(error) => stats.finish(open, 0, 0, Some(error.to_string())),
            }
        }
        Route::Refuse { reason } => {
            tracing::info!(src = %peer, %dst, %reason, "connection refused by routing");
            reset(client);
            stats.finish(open, 0, 0, Some(reason));
        }
    }
}

/// Hop ④ for same-node delivery, on the view the route came from:
/// `Ok((source identity, destination identity))` or `Err(policy)`.
fn authorize_local(
    view: &MeshView,
    peer: SocketAddr,
    target: SocketAddr,
) -> Result<(Option<Identity>, Option<Identity>), String> {
    let Some(dst) = view.workload_by_ip(target.ip()) else {
        return Ok((None, None));
    };
    let src = view
        .workload_by_ip(peer.ip())
        .filter(|w| w.mesh)
        .map(|w| w.identity.clone());
    let conn = Conn {
        src_ip: Some(peer.ip()),
        src: src.as_ref(),
        dst_ip: target.ip(),
        dst_port: target.port(),
    };
    let evaluation = view.policies.evaluate(dst, &conn);
    crate::policy::log(&evaluation, dst, &conn, "local");
    match evaluation.verdict {
        Verdict::Allow => Ok((src, Some(dst.identity.clone()))),
        Verdict::Deny { policy } => Err(policy),
    }
}

async fn direct(
    mut client: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    open: crate::state::connections::Open,
    stats: Arc<ConnectionStats>,
    settings: ProxySettings,
    track: Option<(Arc<LiveConnections>, Option<Identity>)>,
) {
    let _ = client.set_nodelay(true);
    let mut upstream = match connect(dst, &settings).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::info!(src = %peer, dst = %dst, %error, "upstream connect failed");
            reset(client);
            stats.finish(open, 0, 0, Some(format!("connect: {error}")));
            return;
        }
    };
    // Registered until the relay ends: a policy change may close it.
    let _live = track.and_then(|(live, src)| {
        live.register(Some(peer.ip()), src.as_ref(), dst, &[&client, &upstream])
            .map_err(
                |error| tracing::warn!(%error, "cannot track the connection for policy updates"),
            )
            .ok()
    });
    tracing::debug!(id = open.id, src = %peer, dst = %dst, "proxying");
    let result = super::relay::relay(&mut client, &mut upstream, settings.buffer_size).await;
    match result {
        Ok((sent, received)) => {
            tracing::debug!(id = open.id, src = %peer, dst = %dst, sent, received, "closed");
            stats.finish(open, sent, received, None);
        }
        Err(error) => {
            tracing::debug!(id = open.id, src = %peer, dst = %dst, %error, "ended with error");
            stats.finish(open, 0, 0, Some(error.to_string()));
        }
    }
}
