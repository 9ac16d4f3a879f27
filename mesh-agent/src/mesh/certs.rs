//! Workload certificates for the mesh pods of this node: a key and a CSR per
//! identity, signed by the mesh CA (Istio's `CreateCertificate`), kept in the
//! HBONE certificate store, renewed at half-life. A renewed certificate is
//! used by new handshakes; open connections keep theirs.
use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use mesh_hbone::{issue::renewal_due, CertStore, Identity, WorkloadCert};
use mesh_xds::proto::istio_ca::istio_certificate_service_client::IstioCertificateServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::route::MeshView;

pub use mesh_hbone::issue::IssueError as CertError;

pub struct CertManager {
    pub store: Arc<CertStore>,
    pub ca: IstioCertificateServiceClient<Channel>,
    pub ttl: Duration,
    pub issued: Arc<std::sync::atomic::AtomicU64>,
    /// The agent's ServiceAccount token, for the CA's TokenReview.
    pub token: Option<mesh_xds::token::TokenFile>,
}

impl CertManager {
    async fn fetch(&self, identity: &Identity) -> Result<WorkloadCert, CertError> {
        mesh_hbone::issue::issue(&self.ca, identity, self.ttl, self.token.as_ref())
            .await
            .map(|issued| issued.cert)
    }

    /// Keeps the store equal to the identities of this node's mesh pods.
    pub async fn run(self, mut view: watch::Receiver<Arc<MeshView>>) {
        loop {
            let wanted: BTreeSet<Identity> = view
                .borrow()
                .local_workloads()
                .map(|w| w.identity.clone())
                .collect();
            for stale in self
                .store
                .identities()
                .into_iter()
                .filter(|id| !wanted.contains(id))
            {
                self.store.remove(&stale);
                tracing::info!(identity = %stale, "certificate dropped: no local workload uses it");
            }
            let now = SystemTime::now();
            for identity in &wanted {
                if self
                    .store
                    .get(identity)
                    .is_some_and(|c| !renewal_due(&c, now))
                {
                    continue;
                }
                match self.fetch(identity).await {
                    Ok(cert) => {
                        tracing::info!(
                            identity = %identity,
                            serial = cert.serial(),
                            "workload certificate issued"
                        );
                        self.store.insert(cert);
                        self.issued
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "certificate request failed; retrying")
                    }
                }
            }
            tokio::select! {
                changed = view.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
