//! What the outbound (hops ②–③) and inbound (hop ④) proxies work from, in
//! one bundle, as ztunnel's `ProxyInputs`: settings, connection stats, the
//! mesh view, the live connections policy may close and the HBONE client.
//! Without a control plane the view is empty and never changes, so every
//! connection is passthrough, and there is no HBONE client.
use std::sync::Arc;

use mesh_hbone::HboneClient;
use tokio::sync::watch;

use super::{connections::ConnectionStats, runtime::MeshRuntime, view::MeshView};
use crate::{
    dns::resolve::Resolver, outbound::proxy::ProxySettings, policy::live::LiveConnections,
};

pub struct ProxyInputs {
    pub settings: ProxySettings,
    /// Where every accepted connection is opened and finished.
    pub stats: Arc<ConnectionStats>,
    pub view: watch::Receiver<Arc<MeshView>>,
    /// Open connections to local pods, re-checked on policy change.
    pub live: Arc<LiveConnections>,
    /// HBONE to peer agents and waypoints; `None` without a control plane.
    pub hbone: Option<HboneClient>,
    /// Resolves ServiceEntry endpoints known by name; `None` when no DNS
    /// upstream is known (such endpoints then fail with `DF`).
    pub resolver: Option<Resolver>,
}

impl ProxyInputs {
    /// The inputs of a proxy fed by `mesh` (`None`: no control plane).
    pub fn new(
        settings: ProxySettings,
        stats: Arc<ConnectionStats>,
        mesh: Option<&MeshRuntime>,
        resolver: Option<Resolver>,
    ) -> Self {
        match mesh {
            Some(mesh) => Self {
                settings,
                stats,
                view: mesh.view.clone(),
                live: Arc::clone(&mesh.live),
                hbone: Some(mesh.hbone.clone()),
                resolver,
            },
            None => Self {
                settings,
                stats,
                view: watch::channel(Arc::new(MeshView::default())).1,
                live: Arc::default(),
                hbone: None,
                resolver,
            },
        }
    }
}
