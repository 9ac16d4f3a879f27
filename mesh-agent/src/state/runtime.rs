//! The mesh side's handles, shared by the proxies, the admin endpoint and
//! the metrics: the view, the HBONE client and certificates, the xDS
//! client's state and what the kernel enforces. Present when a control
//! plane is configured; `crate::mesh::start` builds it.
use std::sync::{atomic::AtomicU64, Arc, Mutex};

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
    pub xds: watch::Receiver<Arc<mesh_xds::XdsSnapshot>>,
    /// Open connections to local pods, re-checked on policy change.
    pub live: Arc<LiveConnections>,
    /// What `deny_connect` holds and why.
    pub kernel_denies: Arc<Mutex<Vec<KernelDeny>>>,
    /// The control plane's address, as configured.
    pub xds_address: String,
    /// Unix ms of the last xDS change applied to the view (0: none yet).
    pub xds_updated_unix_ms: Arc<AtomicU64>,
}
