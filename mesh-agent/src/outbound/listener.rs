//! Hop ②'s entry: the outbound capture listener (port 15001), where the
//! kernel's redirect lands; it recovers each connection's original
//! destination (crate::capture::orig_dst) and hands it to proxy.rs.
//!
//! The accept loop is mesh-admin's limited one: every pod on the node
//! connects here, so one pod must not take every descriptor of the agent
//! (a cap per pod address and one in total, back-off when descriptors run
//! out).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use mesh_admin::listen::{Limits, Listener};
use tokio::net::TcpListener;

use super::proxy::{self, FastPathGrant, ProxySettings};
use crate::{
    capture::{
        fast_path::FastPath,
        netns_sockets::NetnsSockets,
        orig_dst::OrigDstTable,
        pod_netns::{PodNetnsTable, PodOrigin},
    },
    dns::resolve::Resolver,
    state::{connections::ConnectionStats, inputs::ProxyInputs, runtime::MeshRuntime},
};

/// Captured connections one pod (source address) may hold open.
pub const MAX_PER_POD: usize = 4096;
/// Captured connections the agent holds open in total.
pub const MAX_TOTAL: usize = 65_536;

/// At most one "no original destination" warning per 10 s.
static UNCAPTURED_LOG: mesh_admin::rate_limit::LogLimiter =
    mesh_admin::rate_limit::LogLimiter::new(Duration::from_secs(10));

pub struct Outbound {
    pub listener: TcpListener,
    pub orig_dst: Arc<OrigDstTable>,
    pub inputs: Arc<ProxyInputs>,
    /// Where tunnels of a source pod are opened from; `None`: the agent's
    /// own namespace.
    pub origins: Option<TunnelOrigins>,
}

/// The enrolled pods' namespaces and the factory making sockets in them,
/// and the same-node fast path when it is on.
#[derive(Clone)]
pub struct TunnelOrigins {
    pub table: Arc<PodNetnsTable>,
    pub sockets: NetnsSockets,
    pub fast_path: Option<Arc<FastPath>>,
}

impl TunnelOrigins {
    /// The origin of tunnels from the pod at `ip`, if its namespace is known.
    fn of(&self, ip: std::net::IpAddr) -> Option<Arc<dyn mesh_hbone::SocketOrigin>> {
        let pod = self.table.get(ip)?;
        Some(Arc::new(PodOrigin {
            pod,
            sockets: self.sockets.clone(),
        }))
    }

    /// Where pairs of the pod at `ip` are cached once authorized.
    fn fast_path(&self, ip: std::net::IpAddr) -> Option<FastPathGrant> {
        let map = self.fast_path.as_ref()?;
        Some(FastPathGrant {
            map: Arc::clone(map),
            netns_cookie: self.table.get(ip)?.cookie,
        })
    }
}

impl Outbound {
    /// `mesh`: the mesh side, when a control plane is configured;
    /// `resolver`: for ServiceEntry endpoints known by name.
    pub async fn bind(
        addr: SocketAddr,
        orig_dst: Arc<OrigDstTable>,
        stats: Arc<ConnectionStats>,
        settings: ProxySettings,
        mesh: Option<Arc<MeshRuntime>>,
        resolver: Option<Resolver>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%addr, "outbound capture listener ready");
        let inputs = ProxyInputs::new(settings, stats, mesh.as_deref(), resolver);
        Ok(Self {
            listener,
            orig_dst,
            inputs: Arc::new(inputs),
            origins: None,
        })
    }

    /// Opens tunnels from the source pod's namespace.
    pub fn with_origins(mut self, origins: TunnelOrigins) -> Self {
        self.origins = Some(origins);
        self
    }

    /// Runs until the task is dropped.
    ///
    /// Connections without an original destination are refused and
    /// counted; [`UNCAPTURED_LOG`] bounds their log lines.
    pub async fn serve(self) {
        let mut listener = Listener::new(
            self.listener,
            Limits {
                max_connections: MAX_TOTAL,
                max_per_source: Some(MAX_PER_POD),
            },
            "outbound capture",
        );
        loop {
            let accepted = listener.accept().await;
            let (client, peer, permit) = (accepted.stream, accepted.peer, accepted.permit);
            self.inputs.stats.accepted();
            let local = match client.local_addr() {
                Ok(local) => local,
                Err(error) => {
                    tracing::warn!(%peer, %error, "accepted socket has no local address");
                    continue;
                }
            };
            let Some(dst) = self.orig_dst.take(peer, local) else {
                // Not redirected by our programs: refuse rather than be an open proxy.
                // Counted every time; logged at a bounded rate (a pod can
                // connect to the listener directly as often as it likes).
                self.inputs.stats.no_original_destination();
                if let Some(suppressed) = UNCAPTURED_LOG.check() {
                    tracing::warn!(%peer, %local, suppressed, "no original destination recorded; closing");
                }
                proxy::reset(client);
                continue;
            };
            let origin = self.origins.as_ref().and_then(|o| o.of(peer.ip()));
            let fast_path = self.origins.as_ref().and_then(|o| o.fast_path(peer.ip()));
            let relay = proxy::run_from(
                client,
                peer,
                dst,
                Arc::clone(&self.inputs),
                origin,
                fast_path,
            );
            tokio::spawn(async move {
                relay.await;
                drop(permit);
            });
        }
    }
}
