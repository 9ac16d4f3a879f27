//! TLS for the control plane's 15012 port: a serving certificate issued by
//! the mesh CA itself and renewed at half-life, so a long-running control
//! plane never serves an expired certificate. Clients that present a
//! certificate chaining to the mesh root are verified; clients without one
//! (an agent bootstrapping its first workload certificate) are accepted.
//! The ring provider is used explicitly (no aws-lc-rs on our machines).
use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls::{
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    RootCertStore, ServerConfig,
};

use super::{Ca, CaError};

/// Names the serving certificate carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// Hands rustls the current serving certificate, issuing a new one once
/// half of the old one's lifetime has passed.
pub struct ServerCertResolver {
    ca: Arc<Ca>,
    names: ServerNames,
    ttl: Duration,
    current: Mutex<(Arc<CertifiedKey>, Instant)>,
}

impl std::fmt::Debug for ServerCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertResolver")
            .field("names", &self.names)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ServerCertResolver {
    /// Issues the first certificate now (a failure is a startup error).
    pub fn new(ca: Arc<Ca>, names: ServerNames, ttl: Duration) -> Result<Self, CaError> {
        let first = issue(&ca, &names, ttl)?;
        Ok(Self {
            current: Mutex::new((first, Instant::now() + ttl / 2)),
            ca,
            names,
            ttl,
        })
    }

    /// The certificate to present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() >= current.1 {
            match issue(&self.ca, &self.names, self.ttl) {
                Ok(key) => {
                    tracing::info!(ttl = ?self.ttl, "renewed the control plane's serving certificate");
                    *current = (key, Instant::now() + self.ttl / 2);
                }
                Err(error) => {
                    // Keep the old one (still valid for half its life) and
                    // retry in a while rather than on every handshake.
                    tracing::error!(%error, "renewing the control plane's serving certificate");
                    current.1 = Instant::now() + Duration::from_secs(5);
                }
            }
        }
        current.0.clone()
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server configuration for 15012 (ALPN `h2`, for gRPC).
pub fn server_tls_config(
    ca: Arc<Ca>,
    names: ServerNames,
    ttl: Duration,
) -> Result<Arc<ServerConfig>, CaError> {
    let tls = |e: rustls::Error| CaError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.root_pem().as_bytes()) {
        let cert = cert.map_err(|e| CaError::Tls(format!("root certificate PEM: {e}")))?;
        roots.add(cert).map_err(tls)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| CaError::Tls(e.to_string()))?;
    let resolver = ServerCertResolver::new(ca, names, ttl)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_tls_config`] as a tokio acceptor.
pub fn server_tls_acceptor(
    ca: Arc<Ca>,
    names: ServerNames,
    ttl: Duration,
) -> Result<tokio_rustls::TlsAcceptor, CaError> {
    Ok(tokio_rustls::TlsAcceptor::from(server_tls_config(
        ca, names, ttl,
    )?))
}

fn issue(ca: &Ca, names: &ServerNames, ttl: Duration) -> Result<Arc<CertifiedKey>, CaError> {
    let issued = ca.issue_server_cert(&names.dns, &names.ips, ttl)?;
    let leaf = rustls_pemfile::certs(&mut issued.chain_pem[0].as_bytes())
        .next()
        .ok_or_else(|| CaError::Tls("issued certificate has no PEM block".into()))?
        .map_err(|e| CaError::Tls(format!("issued certificate PEM: {e}")))?;
    let key = rustls_pemfile::private_key(&mut issued.key_pem.as_bytes())
        .map_err(|e| CaError::Tls(format!("issued key PEM: {e}")))?
        .ok_or_else(|| CaError::Tls("issued key has no PEM block".into()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CaError::Tls(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(vec![leaf], signer)))
}
