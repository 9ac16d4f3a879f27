//! Getting a workload certificate from the mesh CA (Istio's
//! `CreateCertificate`): a fresh key, a CSR whose only SAN is the SPIFFE
//! identity, the signed chain back. The node agent asks for its pods'
//! identities, the waypoint for its own; both renew past half-life.
//!
//! A node proxy asks as Istio's ztunnel does, so istiod's CA serves it
//! too: the request's metadata `ImpersonatedIdentity` names the pod's
//! SPIFFE ID while the token proves the agent's own account, and gRPC
//! metadata `clusterid` names the cluster. Whatever was asked, a chain
//! whose leaf is not the requested identity is refused (istiod signs the
//! caller's own identity when it does not honour the impersonation).
use std::time::{Duration, SystemTime};

use mesh_xds::proto::istio_ca::{
    istio_certificate_service_client::IstioCertificateServiceClient, IstioCertificateRequest,
};
use tonic::transport::Channel;

use crate::{CertError, Identity, WorkloadCert};

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
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
    #[error("asking for {identity}: {source}")]
    Token {
        identity: Identity,
        source: mesh_xds::token::TokenError,
    },
    #[error("the CA's answer for {identity} is not a usable certificate: {source}")]
    Chain {
        identity: Identity,
        source: CertError,
    },
    #[error("the CA answered a request for {requested} with a certificate for {got}; not used")]
    WrongIdentity { requested: Identity, got: Identity },
    #[error("asking for {identity}: {source}")]
    ClusterId {
        identity: Identity,
        source: mesh_xds::client::node_identity::InvalidClusterId,
    },
}

/// Request metadata key naming the identity a node proxy asks for on a
/// pod's behalf (Istio's CA honours it for trusted node accounts).
pub const IMPERSONATED_IDENTITY: &str = "ImpersonatedIdentity";

/// How a certificate is asked for, beyond the identity and lifetime.
#[derive(Debug, Clone, Copy, Default)]
pub struct IssueOptions<'a> {
    /// The caller's ServiceAccount token, sent as `authorization: Bearer`.
    pub token: Option<&'a mesh_xds::token::TokenFile>,
    /// Send [`IMPERSONATED_IDENTITY`]: the identity is a pod's, not the
    /// caller's own (a node agent).
    pub impersonate: bool,
    /// Sent as gRPC metadata `clusterid`.
    pub cluster_id: Option<&'a str>,
}

/// A certificate and the chain it came in (leaf first, root last).
pub struct Issued {
    pub cert: WorkloadCert,
    pub chain: Vec<String>,
}

impl Issued {
    /// The chain's root when the CA sent more than the leaf.
    pub fn root(&self) -> Option<&str> {
        (self.chain.len() > 1).then(|| self.chain[self.chain.len() - 1].as_str())
    }
}

/// A key pair (PEM) and a CSR (PEM) carrying `identity` as its only URI SAN.
pub fn csr_for(identity: &Identity) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(rcgen::Ia5String::try_from(
        identity.to_string(),
    )?)];
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Past half of its lifetime (or unreadable times): time to renew. The
/// lifetime counts from `not_before` or from when the certificate was
/// received, whichever is later: CAs backdate `not_before` for clock skew
/// (ours by a minute), and a short-lived certificate (the CA takes 10 s)
/// would otherwise be past half-life when it arrives and be renewed again
/// at once, in a loop.
pub fn renewal_due(cert: &WorkloadCert, now: SystemTime) -> bool {
    let start = cert.not_before().max(cert.received());
    let Ok(life) = cert.not_after().duration_since(start) else {
        return true;
    };
    now >= start + life / 2
}

/// Asks the CA for a certificate of `identity` valid for `ttl`, proving
/// who asks with `token` (a ServiceAccount token, checked by the CA with a
/// TokenReview) when there is one.
pub async fn issue(
    ca: &IstioCertificateServiceClient<Channel>,
    identity: &Identity,
    ttl: Duration,
    token: Option<&mesh_xds::token::TokenFile>,
) -> Result<Issued, IssueError> {
    let opts = IssueOptions {
        token,
        ..IssueOptions::default()
    };
    issue_with(ca, identity, ttl, &opts).await
}

/// The request metadata: `ImpersonatedIdentity` when impersonating.
fn request_metadata(
    identity: &Identity,
    impersonate: bool,
) -> Option<mesh_xds::proto::wkt::Struct> {
    use mesh_xds::proto::wkt::{value::Kind, Struct, Value};
    impersonate.then(|| Struct {
        fields: [(
            IMPERSONATED_IDENTITY.to_string(),
            Value {
                kind: Some(Kind::StringValue(identity.to_string())),
            },
        )]
        .into_iter()
        .collect(),
    })
}

/// [`issue`] with every [`IssueOptions`].
pub async fn issue_with(
    ca: &IstioCertificateServiceClient<Channel>,
    identity: &Identity,
    ttl: Duration,
    opts: &IssueOptions<'_>,
) -> Result<Issued, IssueError> {
    let (csr, key_pem) = csr_for(identity).map_err(|source| IssueError::Csr {
        identity: identity.clone(),
        source,
    })?;
    let request = IstioCertificateRequest {
        csr,
        validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        metadata: request_metadata(identity, opts.impersonate),
    };
    let mut request = mesh_xds::token::authorize(opts.token, tonic::Request::new(request))
        .map_err(|source| IssueError::Token {
            identity: identity.clone(),
            source,
        })?;
    mesh_xds::client::node_identity::insert_cluster_id(request.metadata_mut(), opts.cluster_id)
        .map_err(|source| IssueError::ClusterId {
            identity: identity.clone(),
            source,
        })?;
    let chain = ca
        .clone()
        .create_certificate(request)
        .await
        .map_err(|status| IssueError::Ca {
            identity: identity.clone(),
            status: Box::new(status),
        })?
        .into_inner()
        .cert_chain;
    let cert =
        WorkloadCert::from_pem(chain.join("\n"), key_pem).map_err(|source| IssueError::Chain {
            identity: identity.clone(),
            source,
        })?;
    if cert.identity() != identity {
        return Err(IssueError::WrongIdentity {
            requested: identity.clone(),
            got: cert.identity().clone(),
        });
    }
    Ok(Issued { cert, chain })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_ca::TestCa;

    #[test]
    fn csr_carries_the_spiffe_id_as_its_only_uri_san() {
        let id: Identity = "spiffe://cluster.local/ns/default/sa/web".parse().unwrap();
        let (csr, key) = csr_for(&id).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert!(key.contains("PRIVATE KEY"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let sans = parsed.params.subject_alt_names;
        assert_eq!(sans.len(), 1);
        assert!(matches!(&sans[0], rcgen::SanType::URI(uri) if uri.as_str() == id.to_string()));
    }

    #[test]
    fn half_life_counts_from_receipt_when_not_before_is_backdated() {
        // The test CA backdates not_before by 5 minutes; the certificate is
        // valid for 10 s from now.
        let ca = TestCa::new("test root");
        let id = Identity::new("cluster.local", "default", "a").unwrap();
        let cert = ca.issue_for(&id, 1, Duration::from_secs(10));
        let now = SystemTime::now();
        assert!(
            cert.not_before() + Duration::from_secs(60) < now,
            "backdated"
        );
        assert!(!renewal_due(&cert, now), "due on arrival");
        assert!(!renewal_due(&cert, now + Duration::from_secs(4)));
        assert!(renewal_due(&cert, now + Duration::from_secs(6)));
        assert!(renewal_due(&cert, now + Duration::from_secs(11)), "expired");
    }
}
