//! The waypoint's own workload certificate: a key and a CSR for its SPIFFE
//! identity, signed by the mesh CA (Istio's `CreateCertificate`, as the
//! node agent asks for its pods'), kept in the HBONE [`CertStore`] and
//! renewed at half-life. Without a configured trust bundle the CA's root
//! (the chain's last certificate) becomes the bundle.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use mesh_hbone::{ca_client::renewal_due, CertStore, Identity, TrustBundle, WorkloadCert};
use mesh_xds::proto::istio_ca::istio_certificate_service_client::IstioCertificateServiceClient;
use tonic::transport::Channel;

pub use mesh_hbone::ca_client::IssueError as CertError;

/// Asks the mesh CA for the waypoint's certificate.
#[derive(Clone)]
pub struct CertFetcher {
    pub identity: Identity,
    pub ca: IstioCertificateServiceClient<Channel>,
    pub ttl: Duration,
    /// The waypoint's ServiceAccount token, for the CA's TokenReview.
    pub token: Option<mesh_xds::token::TokenFile>,
}

impl CertFetcher {
    /// One certificate, and the chain's root (its last certificate) when
    /// the CA sent more than the leaf.
    pub async fn fetch(&self) -> Result<(WorkloadCert, Option<String>), CertError> {
        let issued =
            mesh_hbone::ca_client::issue(&self.ca, &self.identity, self.ttl, self.token.as_ref())
                .await?;
        let root = issued.root().map(str::to_string);
        tracing::info!(identity = %self.identity, serial = issued.cert.serial(), "waypoint certificate issued");
        Ok((issued.cert, root))
    }

    /// Retries every second until the CA answers.
    pub async fn first(&self) -> (WorkloadCert, Option<String>) {
        loop {
            match self.fetch().await {
                Ok(r) => return r,
                Err(error) => {
                    tracing::warn!(%error, "waypoint certificate request failed; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Renews the certificate in `store` at half-life, forever; with
    /// `learn_root` the CA's root also replaces the trust bundle.
    pub async fn run(self, store: Arc<CertStore>, learn_root: bool) {
        loop {
            let renew = store
                .get(&self.identity)
                .is_none_or(|c| renewal_due(&c, SystemTime::now()));
            if renew {
                match self.fetch().await {
                    Ok((cert, root)) => {
                        if let Some(bundle) = root
                            .filter(|_| learn_root)
                            .and_then(|r| TrustBundle::from_pem(r).ok())
                        {
                            store.set_trust_bundle(bundle);
                        }
                        store.insert(cert);
                    }
                    Err(error) => tracing::warn!(%error, "waypoint certificate renewal failed"),
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
