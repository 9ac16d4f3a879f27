//! The waypoint's own workload certificate: a key and a CSR for its SPIFFE
//! identity, signed by the mesh CA (Istio's `CreateCertificate`, as the
//! node agent asks for its pods'), kept in the HBONE [`CertStore`] and
//! renewed at half-life. Without a configured trust bundle the CA's root
//! (the chain's last certificate) becomes the bundle.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use mesh_hbone::{CertStore, Identity, TrustBundle, WorkloadCert};
use mesh_xds::proto::istio_ca::{
    istio_certificate_service_client::IstioCertificateServiceClient, IstioCertificateRequest,
};
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("building the CSR for {identity}: {source}")]
    Csr {
        identity: Identity,
        source: rcgen::Error,
    },
    #[error("the CA refused {identity}: {status}")]
    Ca {
        identity: Identity,
        status: Box<tonic::Status>,
    },
    #[error("the CA's answer for {identity} is not a usable certificate: {source}")]
    Chain {
        identity: Identity,
        source: mesh_hbone::CertError,
    },
}

/// A key pair and a CSR carrying `identity` as its only URI SAN.
pub fn csr_for(identity: &Identity) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(rcgen::Ia5String::try_from(
        identity.to_string(),
    )?)];
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Past half of its lifetime (or unreadable times): time to renew.
pub fn due(cert: &WorkloadCert, now: SystemTime) -> bool {
    let Ok(life) = cert.not_after().duration_since(cert.not_before()) else {
        return true;
    };
    now >= cert.not_before() + life / 2
}

/// Asks the mesh CA for the waypoint's certificate.
#[derive(Clone)]
pub struct CertFetcher {
    pub identity: Identity,
    pub ca: IstioCertificateServiceClient<Channel>,
    pub ttl: Duration,
}

impl CertFetcher {
    /// One certificate, and the chain's root (its last certificate) when
    /// the CA sent more than the leaf.
    pub async fn fetch(&self) -> Result<(WorkloadCert, Option<String>), CertError> {
        let identity = &self.identity;
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
        let chain = response.into_inner().cert_chain;
        let root = (chain.len() > 1).then(|| chain[chain.len() - 1].clone());
        let cert = WorkloadCert::from_pem(chain.join("\n"), key_pem).map_err(|source| {
            CertError::Chain {
                identity: identity.clone(),
                source,
            }
        })?;
        tracing::info!(identity = %identity, serial = cert.serial(), "waypoint certificate issued");
        Ok((cert, root))
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
                .is_none_or(|c| due(&c, SystemTime::now()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_carries_the_waypoint_identity() {
        let id: Identity = "spiffe://cluster.local/ns/default/sa/waypoint"
            .parse()
            .unwrap();
        let (csr, key) = csr_for(&id).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        assert!(matches!(&parsed.params.subject_alt_names[0],
            rcgen::SanType::URI(uri) if uri.as_str() == id.to_string()));
    }
}
