//! The mesh side's handles, shared by the proxies, the admin endpoint and
//! the metrics: the view, the HBONE client and certificates, the xDS
//! client's state and what the kernel enforces. Present when a control
//! plane is configured; `crate::mesh::start` builds it.
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use mesh_hbone::{CertStore, HboneClient};
use tokio::sync::watch;

use super::view::MeshView;
use crate::policy::{kernel::KernelDeny, live::LiveConnections};

pub struct MeshRuntime {
    pub view: watch::Receiver<Arc<MeshView>>,
    pub hbone: HboneClient,
    pub store: Arc<CertStore>,
    /// Certificates obtained from the CA since start.
    pub issued: Arc<AtomicU64>,
    /// Certificates the CA answered for another identity than the one
    /// asked (discarded, never used).
    pub wrong_identity: Arc<AtomicU64>,
    pub xds: watch::Receiver<Arc<mesh_xds::XdsSnapshot>>,
    /// Open connections to local pods, re-checked on policy change.
    pub live: Arc<LiveConnections>,
    /// What `deny_connect` holds and why.
    pub kernel_denies: Arc<Mutex<Vec<KernelDeny>>>,
    /// How far the kernel's policy maps follow the view.
    pub policy_generations: Arc<PolicyGenerations>,
    /// The control plane's address, as configured.
    pub xds_address: String,
    /// Unix ms of the last xDS change applied to the view (0: none yet).
    pub xds_updated_unix_ms: Arc<AtomicU64>,
}

/// What the policy sync (crate::mesh::policy_sync) has written to the
/// kernel: the generation of the last view ([`MeshView::generation`])
/// whose `deny_connect`, `strict_pods` and `probe_ports` entries were all
/// written and against which open connections were re-checked. Equal to
/// the served view's generation: the kernel holds what the view says.
///
/// [`MeshView::generation`]: crate::state::view::MeshView::generation
#[derive(Debug, Default)]
pub struct PolicyGenerations {
    kernel: AtomicU64,
}

impl PolicyGenerations {
    /// The kernel maps were written for the view of `generation` and open
    /// connections re-checked. The kernel generation never moves back.
    pub fn applied(&self, generation: u64) {
        self.kernel.fetch_max(generation, Ordering::SeqCst);
    }

    /// The generation the kernel maps hold (0: none written yet).
    pub fn kernel(&self) -> u64 {
        self.kernel.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::PolicyGenerations;

    #[test]
    fn the_kernel_generation_never_moves_back() {
        let g = PolicyGenerations::default();
        assert_eq!(g.kernel(), 0);
        g.applied(1);
        assert_eq!(g.kernel(), 1);
        g.applied(3);
        g.applied(2);
        assert_eq!(g.kernel(), 3, "a late pass does not move it back");
    }
}
