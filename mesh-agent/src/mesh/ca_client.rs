//! The agent's connection to the mesh CA (Istio's `CreateCertificate`),
//! built so one stalled connection cannot stop issuance for the node:
//!
//! - every request has a deadline ([`CaSettings::request_timeout`]);
//! - HTTP/2 keepalive pings find a peer that stopped answering even while
//!   no request is open;
//! - a request that misses its deadline replaces the channel, so the retry
//!   opens a fresh connection instead of queueing on the stalled one.
use std::{sync::Mutex, time::Duration};

use mesh_hbone::{Identity, WorkloadCert};
use mesh_xds::{
    proto::istio_ca::istio_certificate_service_client::IstioCertificateServiceClient,
    token::TokenFile, transport::TlsConnector,
};
use tonic::transport::{Channel, Endpoint};

use super::certs::CertError;

/// Deadlines, keepalive and pacing of certificate requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSettings {
    /// One `CreateCertificate` call, connection set-up included.
    pub request_timeout: Duration,
    /// TCP (and TLS) connection set-up.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval on the channel, idle or not.
    pub keepalive_interval: Duration,
    /// A PING unanswered this long closes the connection.
    pub keepalive_timeout: Duration,
    /// Identities fetched at once.
    pub concurrency: usize,
    /// First retry delay of a failed identity; doubles (with jitter) up to
    /// `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            concurrency: 8,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// How the agent presents its requests, as Istio's ztunnel does: the
/// pod's identity as `ImpersonatedIdentity` (the token proves the agent's
/// own account) and the `clusterid` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRequest {
    pub impersonate: bool,
    pub cluster_id: Option<String>,
}

impl Default for CaRequest {
    fn default() -> Self {
        CaRequest {
            impersonate: true,
            cluster_id: None,
        }
    }
}

/// Why one certificate could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Issue(#[from] CertError),
    #[error("the CA did not answer for {identity} within {after:?}; reconnecting")]
    DeadlineExceeded { identity: Identity, after: Duration },
}

/// The CA client; cheap to share behind an `Arc`.
pub struct CaClient {
    endpoint: Endpoint,
    tls: Option<TlsConnector>,
    settings: CaSettings,
    request: CaRequest,
    current: Mutex<IstioCertificateServiceClient<Channel>>,
}

impl CaClient {
    /// `tls`: verify an `https://` CA with it; `None` for plaintext.
    pub fn new(endpoint: Endpoint, tls: Option<TlsConnector>, settings: CaSettings) -> Self {
        let endpoint = endpoint
            .connect_timeout(settings.connect_timeout)
            .http2_keep_alive_interval(settings.keepalive_interval)
            .keep_alive_timeout(settings.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_keepalive(Some(settings.keepalive_interval));
        let current = Mutex::new(connect(&endpoint, tls.as_ref()));
        CaClient {
            endpoint,
            tls,
            settings,
            request: CaRequest::default(),
            current,
        }
    }

    /// Sets how requests present themselves (impersonation, cluster id).
    pub fn with_request(mut self, request: CaRequest) -> Self {
        self.request = request;
        self
    }

    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// Asks the CA for a certificate of `identity`, within the deadline.
    pub async fn issue(
        &self,
        identity: &Identity,
        ttl: Duration,
        token: Option<&TokenFile>,
    ) -> Result<WorkloadCert, FetchError> {
        let client = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let after = self.settings.request_timeout;
        let opts = mesh_hbone::ca_client::IssueOptions {
            token,
            impersonate: self.request.impersonate,
            cluster_id: self.request.cluster_id.as_deref(),
        };
        let call = mesh_hbone::ca_client::issue_with(&client, identity, ttl, &opts);
        match tokio::time::timeout(after, call).await {
            Ok(issued) => Ok(issued?.cert),
            Err(_) => {
                // The connection may be half-open: the next call gets a new one.
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
                    connect(&self.endpoint, self.tls.as_ref());
                Err(FetchError::DeadlineExceeded {
                    identity: identity.clone(),
                    after,
                })
            }
        }
    }
}

fn connect(
    endpoint: &Endpoint,
    tls: Option<&TlsConnector>,
) -> IstioCertificateServiceClient<Channel> {
    let channel = match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
        None => endpoint.connect_lazy(),
    };
    IstioCertificateServiceClient::new(channel)
}
