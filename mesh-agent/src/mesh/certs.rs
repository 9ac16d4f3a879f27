//! Workload certificates for the mesh pods of this node: a key and a CSR per
//! identity, signed by the mesh CA (Istio's `CreateCertificate`), kept in the
//! HBONE certificate store, renewed at half-life. A renewed certificate is
//! used by new handshakes; open connections keep theirs.
use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use mesh_hbone::{CertStore, Identity, WorkloadCert};
use mesh_xds::proto::istio_ca::{
    istio_certificate_service_client::IstioCertificateServiceClient, IstioCertificateRequest,
};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::route::MeshView;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("building the CSR for {identity}")]
    Csr {
        identity: Identity,
        source: rcgen::Error,
    },
    #[error("the CA refused {identity}: {status}")]
    Ca {
        identity: Identity,
        status: Box<tonic::Status>,
    },
    #[error("the CA's answer for {identity} is not a usable certificate")]
    Chain {
        identity: Identity,
        source: mesh_hbone::CertError,
    },
}

pub struct CertManager {
    pub store: Arc<CertStore>,
    pub ca: IstioCertificateServiceClient<Channel>,
    pub ttl: Duration,
    pub issued: Arc<std::sync::atomic::AtomicU64>,
}

/// A key pair and a CSR carrying `identity` as its only URI SAN.
fn csr_for(identity: &Identity) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(rcgen::Ia5String::try_from(
        identity.to_string(),
    )?)];
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Past half of its lifetime (or unreadable times): time to renew.
fn due(cert: &WorkloadCert, now: SystemTime) -> bool {
    let Ok(life) = cert.not_after().duration_since(cert.not_before()) else {
        return true;
    };
    now >= cert.not_before() + life / 2
}

impl CertManager {
    async fn fetch(&self, identity: &Identity) -> Result<WorkloadCert, CertError> {
        let (csr, key_pem) = csr_for(identity).map_err(|source| CertError::Csr {
            identity: identity.clone(),
            source,
        })?;
        let request = IstioCertificateRequest {
            csr,
            validity_duration: i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX),
            metadata: None,
        };
        let response = self
            .ca
            .clone()
            .create_certificate(request)
            .await
            .map_err(|status| CertError::Ca {
                identity: identity.clone(),
                status: Box::new(status),
            })?;
        let chain = response.into_inner().cert_chain.join("\n");
        WorkloadCert::from_pem(chain, key_pem).map_err(|source| CertError::Chain {
            identity: identity.clone(),
            source,
        })
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
                if self.store.get(identity).is_some_and(|c| !due(&c, now)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_carries_the_spiffe_id_as_uri_san() {
        let id: Identity = "spiffe://cluster.local/ns/default/sa/web".parse().unwrap();
        let (csr, key) = csr_for(&id).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert!(key.contains("PRIVATE KEY"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let sans = parsed.params.subject_alt_names;
        assert_eq!(sans.len(), 1);
        assert!(matches!(&sans[0], rcgen::SanType::URI(uri) if uri.as_str() == id.to_string()));
    }
}
