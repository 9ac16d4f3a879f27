//! rustls configurations for HBONE: TLS 1.3 only, ALPN `h2`, the ring
//! provider installed explicitly, certificates read from the [`CertStore`]
//! at handshake time (so rotation applies to the next handshake).
//!
//! Server: requires a client certificate chaining to the trust bundle (no
//! name checks) with one SPIFFE URI SAN, and picks its own certificate by
//! [`local_identity`]: a server bound to one identity (a pod's listener)
//! presents it to a client sending no SNI, as ztunnel's clients do; a
//! server holding several identities on one address picks by SNI
//! ([`sni_for`]). Client: sends no SNI unless asked, presents the source
//! identity's certificate and accepts only a server chain leading to the
//! bundle whose SPIFFE ID is the expected one.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{SignatureScheme, SupportedProtocolVersion};

use crate::certs::{parse_leaf, CertError};
use crate::identity::{sni_for, Identity};
use crate::store::CertStore;

/// The only application protocol HBONE speaks.
pub const ALPN_H2: &[u8] = b"h2";
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The ring provider; never the process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("building the {side} TLS config failed: {source}")]
    Config {
        side: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("SNI {sni:?} derived from {identity} is not a valid DNS name")]
    InvalidSni { identity: Identity, sni: String },
}

/// A peer certificate that verified as a chain but fails our identity rules.
/// Carried inside `rustls::Error::InvalidCertificate(CertificateError::Other)`.
#[derive(Debug, thiserror::Error)]
pub enum PeerIdentityError {
    #[error("server presented {presented}, expected {expected}")]
    Mismatch {
        expected: Identity,
        presented: Identity,
    },
    #[error("peer certificate has no usable SPIFFE identity: {0}")]
    NoIdentity(#[from] CertError),
}

fn reject(e: PeerIdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The identity a server presents for a ClientHello naming `sni`:
/// - bound to `pinned` (a pod's own listener): `pinned`, when the client
///   sends no SNI or the SNI [`sni_for`] `pinned`; any other SNI is refused;
/// - unbound: the identity [`sni_for`] names; without SNI, the store's only
///   identity if it holds exactly one (a waypoint), else none.
///
/// `None` fails the handshake.
pub fn local_identity(
    store: &CertStore,
    pinned: Option<&Identity>,
    sni: Option<&str>,
) -> Option<Identity> {
    match (pinned, sni) {
        (Some(pinned), None) => Some(pinned.clone()),
        (Some(pinned), Some(sni)) => (sni_for(pinned) == sni).then(|| pinned.clone()),
        (None, Some(sni)) => store.identity_for_sni(sni),
        (None, None) => {
            let mut all = store.identities();
            (all.len() == 1).then(|| all.remove(0))
        }
    }
}

/// The rustls server config of an HBONE server backed by `store`, bound
/// to `pinned` when it serves one workload (see [`local_identity`]).
pub fn server_config(
    store: Arc<CertStore>,
    pinned: Option<Identity>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(SpiffeClientVerifier {
        store: store.clone(),
        provider: provider.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(TLS13_ONLY)
        .map_err(|source| TlsError::Config {
            side: "server",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(IdentityResolver { store, pinned }));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // Clients never resume (resumption would skip certificate checks).
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The rustls client config for connections from `src` to a server that
/// must prove it is `expected`, and the server name to hand rustls. With
/// `send_sni` the name is [`sni_for`]`(expected)` and goes out in SNI (for
/// a server holding several identities on one address); without, no SNI
/// is sent, as ztunnel does towards a pod's own listener, and the name is
/// only a placeholder (the verifier checks the SPIFFE ID, never a name).
pub fn client_config(
    store: Arc<CertStore>,
    src: &Identity,
    expected: &Identity,
    send_sni: bool,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), TlsError> {
    let sni = sni_for(expected);
    let server_name = ServerName::try_from(sni.clone()).map_err(|_| TlsError::InvalidSni {
        identity: expected.clone(),
        sni,
    })?;
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        store: store.clone(),
        expected: expected.clone(),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(TLS13_ONLY)
        .map_err(|source| TlsError::Config {
            side: "client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(ClientCertResolver {
            store,
            src: src.clone(),
        }));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = send_sni;
    Ok((Arc::new(config), server_name))
}

/// Picks the server certificate by [`local_identity`]; no identity, or
/// none with a certificate here, fails the handshake.
struct IdentityResolver {
    store: Arc<CertStore>,
    pinned: Option<Identity>,
}

impl ResolvesServerCert for IdentityResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        let Some(identity) = local_identity(&self.store, self.pinned.as_ref(), sni) else {
            tracing::debug!(?sni, pinned = ?self.pinned, "HBONE handshake names no identity of this server");
            return None;
        };
        let cert = self.store.get(&identity);
        if cert.is_none() {
            tracing::debug!(%identity, "HBONE handshake for an identity with no local certificate");
        }
        cert.map(|c| c.certified_key())
    }
}

impl fmt::Debug for IdentityResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityResolver(pinned {:?})", self.pinned)
    }
}

/// Presents `src`'s current certificate.
struct ClientCertResolver {
    store: Arc<CertStore>,
    src: Identity,
}

impl ResolvesClientCert for ClientCertResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let cert = self.store.get(&self.src);
        if cert.is_none() {
            tracing::warn!(src = %self.src, "no certificate for the HBONE source identity");
        }
        cert.map(|c| c.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl fmt::Debug for ClientCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCertResolver({})", self.src)
    }
}

/// Chain to the current bundle (webpki, client-auth usage) plus a SPIFFE ID.
struct SpiffeClientVerifier {
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle can change under us; an empty list means "send your
        // certificate", which is what every HBONE client does anyway.
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bundle = self.store.trust_bundle();
        let verified =
            bundle
                .client_verifier()
                .verify_client_cert(end_entity, intermediates, now)?;
        parse_leaf(end_entity).map_err(|e| reject(e.into()))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpiffeClientVerifier")
    }
}

/// Chain to the current bundle (webpki, server-auth usage, no DNS name
/// check) and the leaf's SPIFFE ID equal to the expected identity.
struct SpiffeServerVerifier {
    store: Arc<CertStore>,
    expected: Identity,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let bundle = self.store.trust_bundle();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            bundle.roots(),
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let presented = parse_leaf(end_entity)
            .map_err(|e| reject(e.into()))?
            .identity;
        if presented != self.expected {
            return Err(reject(PeerIdentityError::Mismatch {
                expected: self.expected.clone(),
                presented,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeServerVerifier(expect {})", self.expected)
    }
}

/// Finds our [`PeerIdentityError`] or a TLS alert inside an I/O error
/// chain (tokio-rustls and h2 wrap rustls errors in `io::Error`).
pub(crate) fn classify_io(err: &std::io::Error) -> Option<TlsFailure<'_>> {
    let inner = err.get_ref()?;
    let tls = inner.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(e))) => e
            .downcast_ref::<PeerIdentityError>()
            .map(TlsFailure::Identity),
        rustls::Error::AlertReceived(alert) => Some(TlsFailure::Alert(format!("{alert:?}"))),
        _ => None,
    }
}

pub(crate) enum TlsFailure<'a> {
    Identity(&'a PeerIdentityError),
    Alert(String),
}
