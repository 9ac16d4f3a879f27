//! `istio.v1.auth.IstioCertificateService/CreateCertificate`: hands the CSR
//! to a [`CsrSigner`] (the mesh CA) and returns its chain, leaf first, root
//! last. Signing runs on the blocking pool.
//!
//! With an [`AuthPolicy`] (`--authenticate kubernetes`) the caller's bearer
//! token is reviewed first (UNAUTHENTICATED without a valid one) and the
//! identity the CSR asks for must be one [`authorize_certificate`] allows
//! (PERMISSION_DENIED naming the requested and the proven identity), so a
//! pod cannot obtain another identity's certificate. Without one, every
//! well-formed CSR of the trust domain is signed (the demo setup).
//!
//! Requests of Istio's node proxies (ztunnel, our agent) carry the pod's
//! SPIFFE ID as metadata `ImpersonatedIdentity`: it must be the identity
//! the CSR asks for (INVALID_ARGUMENT otherwise) and is authorized by the
//! same rule. A `clusterid` header naming another cluster than
//! `--cluster-id` is UNAUTHENTICATED when callers are authenticated.
use std::{sync::Arc, time::Duration};

use mesh_xds::proto::istio_ca::{
    istio_certificate_service_server::IstioCertificateService, IstioCertificateRequest,
    IstioCertificateResponse,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::{
    authn::{authorize_certificate, check_cluster, AuthPolicy},
    model::{Identity, MeshState},
};

/// Request metadata key of the identity a node proxy asks for on a pod's
/// behalf (Istio's CA API).
pub const IMPERSONATED_IDENTITY: &str = "ImpersonatedIdentity";

/// The `ImpersonatedIdentity` of a request, if any: a string SPIFFE ID.
/// The error is the INVALID_ARGUMENT message.
fn impersonated(req: &IstioCertificateRequest) -> Result<Option<Identity>, String> {
    use mesh_xds::proto::wkt::value::Kind;
    let Some(value) = req
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(IMPERSONATED_IDENTITY))
    else {
        return Ok(None);
    };
    match &value.kind {
        Some(Kind::StringValue(id)) => crate::ca::parse_spiffe_id(id)
            .map(Some)
            .map_err(|e| format!("metadata {IMPERSONATED_IDENTITY}: {e}")),
        _ => Err(format!(
            "metadata {IMPERSONATED_IDENTITY} must be a string SPIFFE ID"
        )),
    }
}

/// INVALID_ARGUMENT (logged) unless the `ImpersonatedIdentity` `asked` is
/// the identity the CSR asks for.
fn mismatch(
    asked: &Identity,
    in_csr: &Identity,
    peer: Option<std::net::SocketAddr>,
) -> Result<(), Box<Status>> {
    if asked == in_csr {
        return Ok(());
    }
    let message =
        format!("metadata {IMPERSONATED_IDENTITY} names {asked} but the CSR asks for {in_csr}");
    warn!(?peer, "certificate request refused: {message}");
    Err(Box::new(Status::invalid_argument(message)))
}

/// Signs certificate requests. Implemented by the control plane's CA.
pub trait CsrSigner: Send + Sync {
    /// Signs a PEM PKCS#10 CSR for `ttl`; returns PEM certificates, leaf
    /// first, root last. The error says what was wrong with the request.
    fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, String>;

    /// The identity the CSR asks for (its single SPIFFE URI SAN), checked
    /// before signing when callers are authenticated.
    fn requested_identity(&self, _csr_pem: &str) -> Result<Identity, String> {
        Err("this signer cannot tell which identity a CSR asks for".into())
    }
}

/// Validity when the client asks for none (Istio's default, 24 h).
pub const DEFAULT_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The gRPC service.
pub struct CaService {
    signer: Arc<dyn CsrSigner>,
    default_ttl: Duration,
    /// Authentication and the state it authorizes node agents against.
    auth: Option<(AuthPolicy, watch::Receiver<Arc<MeshState>>)>,
    /// `--cluster-id`: the only cluster a `clusterid` header may name.
    cluster_id: String,
}

impl CaService {
    pub fn new(signer: Arc<dyn CsrSigner>, default_ttl: Duration) -> Self {
        CaService {
            signer,
            default_ttl,
            auth: None,
            cluster_id: mesh_xds::client::node_identity::DEFAULT_CLUSTER_ID.into(),
        }
    }

    /// The cluster callers' `clusterid` header must name (when present).
    pub fn with_cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.cluster_id = cluster_id.into();
        self
    }

    /// Authenticates and authorizes every request with `policy`; node
    /// agents are checked against the pods of `state`.
    pub fn with_auth(mut self, policy: AuthPolicy, state: watch::Receiver<Arc<MeshState>>) -> Self {
        self.auth = Some((policy, state));
        self
    }

    /// UNAUTHENTICATED / PERMISSION_DENIED unless the caller may have a
    /// certificate for what `csr` asks.
    async fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        csr: &str,
        impersonated: Option<&Identity>,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<(), Status> {
        let Some((policy, state)) = &self.auth else {
            // The signer signs what the CSR asks; a mismatch is a client bug.
            if let (Some(asked), Ok(in_csr)) = (impersonated, self.signer.requested_identity(csr)) {
                mismatch(asked, &in_csr, peer).map_err(|e| *e)?;
            }
            return Ok(());
        };
        let caller = async {
            check_cluster(metadata, &self.cluster_id)?;
            policy.authenticate(metadata).await
        }
        .await
        .map_err(|e| {
            warn!(?peer, "certificate request not authenticated: {e}");
            e.to_status("certificate request")
        })?;
        let requested = self
            .signer
            .requested_identity(csr)
            .map_err(|e| Status::invalid_argument(format!("reading the CSR: {e}")))?;
        if let Some(asked) = impersonated {
            mismatch(asked, &requested, peer).map_err(|e| *e)?;
        }
        let state = state.borrow().clone();
        authorize_certificate(policy, &caller, &requested, &state).map_err(|message| {
            warn!(?peer, caller = %caller, impersonated = impersonated.is_some(), "{message}");
            Status::permission_denied(message)
        })?;
        info!(?peer, caller = %caller, identity = %requested, impersonated = impersonated.is_some(), "certificate request authorized");
        Ok(())
    }

    /// `validity_duration` (seconds) → TTL; 0 means the default.
    fn ttl(&self, validity_duration: i64) -> Option<Duration> {
        match u64::try_from(validity_duration) {
            Ok(0) => Some(self.default_ttl),
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => None,
        }
    }
}

#[tonic::async_trait]
impl IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        req: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let peer = mesh_xds::transport::remote_addr(&req);
        let metadata = req.metadata().clone();
        let req = req.into_inner();
        if self.auth.is_some() && metadata.get("authorization").is_none() {
            // Before looking at the CSR: an anonymous caller learns nothing.
            return Err(Status::unauthenticated(
                "certificate request: no `authorization: Bearer <token>` metadata",
            ));
        }
        if req.csr.trim().is_empty() {
            return Err(Status::invalid_argument("csr is empty"));
        }
        let impersonated = impersonated(&req).map_err(Status::invalid_argument)?;
        self.authorize(&metadata, &req.csr, impersonated.as_ref(), peer)
            .await?;
        let ttl = self.ttl(req.validity_duration).ok_or_else(|| {
            Status::invalid_argument(format!(
                "validity_duration {} is negative",
                req.validity_duration
            ))
        })?;
        let signer = self.signer.clone();
        let csr = req.csr;
        let chain = tokio::task::spawn_blocking(move || signer.sign(&csr, ttl))
            .await
            .map_err(|e| Status::internal(format!("signer task failed: {e}")))?
            .map_err(|e| {
                warn!(?peer, "certificate request refused: {e}");
                Status::invalid_argument(format!("signing the CSR: {e}"))
            })?;
        if chain.is_empty() {
            return Err(Status::internal("the signer returned no certificate"));
        }
        info!(
            ?peer,
            ttl_secs = ttl.as_secs(),
            "issued a workload certificate"
        );
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Fake(Mutex<Vec<(String, Duration)>>);

    impl CsrSigner for Fake {
        fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, String> {
            self.0.lock().unwrap().push((csr_pem.to_string(), ttl));
            if csr_pem.contains("bad") {
                return Err("CSR signature invalid".into());
            }
            Ok(vec!["leaf".into(), "root".into()])
        }
    }

    fn request(csr: &str, validity: i64) -> Request<IstioCertificateRequest> {
        Request::new(IstioCertificateRequest {
            csr: csr.into(),
            validity_duration: validity,
            metadata: None,
        })
    }

    #[tokio::test]
    async fn ttl_default_explicit_and_errors() {
        let fake = Arc::new(Fake(Mutex::new(vec![])));
        let svc = CaService::new(fake.clone(), DEFAULT_CERT_TTL);
        let resp = svc
            .create_certificate(request("csr", 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.cert_chain, ["leaf", "root"]);
        svc.create_certificate(request("csr", 3600)).await.unwrap();
        let calls = fake.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                ("csr".into(), DEFAULT_CERT_TTL),
                ("csr".into(), Duration::from_secs(3600))
            ]
        );

        let err = svc
            .create_certificate(request("csr", -1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = svc.create_certificate(request("  ", 0)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = svc.create_certificate(request("bad", 0)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("CSR signature invalid"),
            "{}",
            err.message()
        );
    }
}
