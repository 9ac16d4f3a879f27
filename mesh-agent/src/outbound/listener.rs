//! Accept loop of the outbound capture listener.
use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use super::proxy::{self, MeshRuntime, ProxySettings};
use crate::{capture::orig_dst::OrigDstTable, state::connections::ConnectionStats};

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
    pub async fn serve(self) {
        loop {
            let (client, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
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
                self.stats.no_original_destination();
                tracing::warn!(%peer, %local, "no original destination recorded; closing");
                proxy::reset(client);
                continue;
            };
            let stats = Arc::clone(&self.stats);
            let settings = self.settings.clone();
            tokio::spawn(proxy::run(
                client,
                peer,
                dst,
                stats,
                settings,
                self.mesh.clone(),
            ));
        }
    }
}
