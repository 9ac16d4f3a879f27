//! Accept loop of the outbound capture listener, through mesh-admin's
//! limited accept loop: every pod on the node connects here, so one pod
//! must not take every descriptor of the agent (a cap per pod address and
//! one in total, back-off when descriptors run out).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use mesh_admin::listen::{Limits, Listener};
use tokio::net::TcpListener;

use super::proxy::{self, MeshRuntime, ProxySettings};
use crate::{capture::orig_dst::OrigDstTable, state::connections::ConnectionStats};

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
    pub stats: Arc<ConnectionStats>,
    pub settings: ProxySettings,
    pub mesh: Option<Arc<MeshRuntime>>,
}

impl Outbound {
    pub async fn bind(
        addr: SocketAddr,
        orig_dst: Arc<OrigDstTable>,
        stats: Arc<ConnectionStats>,
        settings: ProxySettings,
        mesh: Option<Arc<MeshRuntime>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%addr, "outbound capture listener ready");
        Ok(Self {
            listener,
            orig_dst,
            stats,
            settings,
            mesh,
        })
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
            self.stats.accepted();
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
                self.stats.no_original_destination();
                if let Some(suppressed) = UNCAPTURED_LOG.check() {
                    tracing::warn!(%peer, %local, suppressed, "no original destination recorded; closing");
                }
                proxy::reset(client);
                continue;
            };
            let stats = Arc::clone(&self.stats);
            let settings = self.settings.clone();
            let relay = proxy::run(client, peer, dst, stats, settings, self.mesh.clone());
            tokio::spawn(async move {
                relay.await;
                drop(permit);
            });
        }
    }
}
