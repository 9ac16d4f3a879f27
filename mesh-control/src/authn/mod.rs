//! Who is calling: the server side of token authentication
//! (docs/contracts/authentication.md). Agents and waypoints send their projected
//! ServiceAccount token as gRPC metadata `authorization: Bearer <token>` on
//! every xDS stream and certificate request; an [`Authenticator`] turns it
//! into a [`Caller`] (in production [`TokenReviewer`], which asks the API
//! server), and [`authorize_certificate`] decides which identities that
//! caller may obtain a certificate for.
//!
//! - [`token_review`]: `authentication.k8s.io/v1` TokenReview with a
//!   one-minute cache.
//! - [`authorize`]: the CA rule (own identity, or a trusted node agent
//!   asking, with or without Istio's `ImpersonatedIdentity`, for a pod on
//!   its own node).
pub mod authorize;
pub mod token_review;

use std::sync::Arc;

pub use authorize::authorize_certificate;
pub use token_review::TokenReviewer;

/// The default audience of the projected token (`--token-audience`).
pub const DEFAULT_AUDIENCE: &str = "istio-ca";

/// The default `--ca-trusted-node-accounts` (`--node-agent-account`).
pub const DEFAULT_NODE_AGENT: &str = "istio-system/mesh-agent";

/// An authenticated caller: a Kubernetes service account, and the pod and
/// node its token was bound to when the token says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
    /// From the token's `authentication.kubernetes.io/pod-name` extra.
    pub pod_name: Option<String>,
    /// From the token's `authentication.kubernetes.io/node-name` extra.
    pub node_name: Option<String>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// Why a caller is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no `authorization: Bearer <token>` metadata")]
    Missing,
    #[error("the authorization metadata is not `Bearer <token>`")]
    Malformed,
    #[error("the token was not accepted: {0}")]
    Rejected(String),
    #[error("the token belongs to {0:?}, not to a service account")]
    NotServiceAccount(String),
    /// The reviewer could not be asked (API server down): retryable.
    #[error("cannot review the token: {0}")]
    Unavailable(String),
    /// The `clusterid` header names a cluster whose tokens this control
    /// plane cannot review (as istiod, which knows no remote cluster).
    #[error("the `clusterid` header names cluster {claimed:?}; this control plane reviews tokens of cluster {served:?} only")]
    OtherCluster { claimed: String, served: String },
}

impl AuthError {
    /// The gRPC status: UNAUTHENTICATED, or UNAVAILABLE when the API
    /// server could not be asked (the client should retry, not give up).
    pub fn to_status(&self, what: &str) -> tonic::Status {
        let message = format!("{what}: {self}");
        match self {
            AuthError::Unavailable(_) => tonic::Status::unavailable(message),
            _ => tonic::Status::unauthenticated(message),
        }
    }
}

/// Turns a bearer token into a [`Caller`].
#[tonic::async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError>;
}

/// What the servers need to authenticate and authorize callers.
#[derive(Clone)]
pub struct AuthPolicy {
    pub authenticator: Arc<dyn Authenticator>,
    /// `(namespace, service account)` of trusted node agents (ours, or
    /// Istio's ztunnel: istiod's CA_TRUSTED_NODE_ACCOUNTS), which may obtain
    /// certificates for pods scheduled on their own node.
    pub node_agents: Vec<(String, String)>,
    pub trust_domain: String,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("node_agents", &self.node_agents)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl AuthPolicy {
    /// Authenticates the caller of a gRPC request from its metadata.
    pub async fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, AuthError> {
        let token = bearer(metadata)?;
        self.authenticator.authenticate(token).await
    }
}

/// Checks the `clusterid` header Istio's node proxies send: absent, or
/// naming `served` (`--cluster-id`).
pub fn check_cluster(
    metadata: &tonic::metadata::MetadataMap,
    served: &str,
) -> Result<(), AuthError> {
    let Some(value) = metadata.get(mesh_xds::client::node_identity::CLUSTER_ID_HEADER) else {
        return Ok(());
    };
    let claimed = value.to_str().unwrap_or("<not ASCII>").trim();
    if claimed.is_empty() || claimed == served {
        return Ok(());
    }
    Err(AuthError::OtherCluster {
        claimed: claimed.to_string(),
        served: served.to_string(),
    })
}

/// The token of `authorization: Bearer <token>`.
pub fn bearer(metadata: &tonic::metadata::MetadataMap) -> Result<&str, AuthError> {
    let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Parses `NS/SA` (`--ca-trusted-node-accounts`).
pub fn parse_account(text: &str) -> Result<(String, String), String> {
    match text.trim().split_once('/') {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') => {
            Ok((ns.to_string(), sa.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not a service account as NAMESPACE/NAME (e.g. {DEFAULT_NODE_AGENT})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataMap;

    use super::*;

    #[test]
    fn bearer_metadata() {
        let mut md = MetadataMap::new();
        assert_eq!(bearer(&md), Err(AuthError::Missing));
        md.insert("authorization", "Bearer abc.def".parse().unwrap());
        assert_eq!(bearer(&md), Ok("abc.def"));
        md.insert("authorization", "bearer  xyz ".parse().unwrap());
        assert_eq!(bearer(&md), Ok("xyz"));
        for bad in ["Basic abc", "Bearer ", "abc"] {
            md.insert("authorization", bad.parse().unwrap());
            assert_eq!(bearer(&md), Err(AuthError::Malformed), "{bad}");
        }
    }

    #[test]
    fn accounts() {
        assert_eq!(
            parse_account("istio-system/mesh-agent"),
            Ok(("istio-system".into(), "mesh-agent".into()))
        );
        for bad in ["", "a", "/b", "a/", "a/b/c"] {
            assert!(parse_account(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_header() {
        let mut md = MetadataMap::new();
        assert_eq!(check_cluster(&md, "Kubernetes"), Ok(()));
        md.insert("clusterid", "Kubernetes".parse().unwrap());
        assert_eq!(check_cluster(&md, "Kubernetes"), Ok(()));
        md.insert("clusterid", "west".parse().unwrap());
        let err = check_cluster(&md, "Kubernetes").unwrap_err();
        assert!(err.to_string().contains("\"west\""), "{err}");
        assert_eq!(err.to_status("x").code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            AuthError::Missing.to_status("x").code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            AuthError::Unavailable("down".into()).to_status("x").code(),
            tonic::Code::Unavailable
        );
    }
}
