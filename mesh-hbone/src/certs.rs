//! Workload certificates (chain + key + the SPIFFE identity read from the
//! leaf) and the trust bundle they are verified against.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{Identity, IdentityError};
use crate::tls::provider;

/// What is wrong with a certificate, key or trust bundle.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading PEM {what} failed: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the certificate chain PEM holds no CERTIFICATE block")]
    EmptyChain,
    #[error("the key PEM holds no private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("certificate is not valid X.509 DER: {reason}")]
    BadDer { reason: String },
    #[error("certificate (serial {serial}) has no spiffe:// URI SAN")]
    NoSpiffeId { serial: String },
    #[error("certificate (serial {serial}) has {count} spiffe:// URI SANs; SPIFFE allows one")]
    ManySpiffeIds { serial: String, count: usize },
    #[error("certificate (serial {serial}) URI SAN is not an Istio SPIFFE ID: {source}")]
    BadSpiffeId {
        serial: String,
        #[source]
        source: Box<IdentityError>,
    },
    #[error("private key for {identity} is unusable or does not match its leaf: {source}")]
    Key {
        identity: Identity,
        #[source]
        source: rustls::Error,
    },
    #[error("the trust bundle PEM holds no CERTIFICATE block")]
    EmptyBundle,
    #[error("trust bundle certificate #{index} is not a usable root: {source}")]
    BadRoot {
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("building the client certificate verifier failed: {reason}")]
    Verifier { reason: String },
}

/// The fields of a leaf certificate this crate cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub identity: Identity,
    /// Serial number, lowercase hex without separators or leading zeros.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The URI SANs of `cert`, in order (none without the extension): what
/// SPIFFE identities and URI `subjectAltNames` checks read.
pub fn uri_sans<'a>(
    cert: &X509Certificate<'a>,
) -> Result<Vec<&'a str>, x509_parser::error::X509Error> {
    Ok(cert
        .subject_alternative_name()?
        .into_iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect())
}

/// Reads the SPIFFE identity (exactly one `spiffe://` URI SAN), serial and
/// validity of a DER certificate. Does not verify anything.
pub fn parse_leaf(der: &CertificateDer<'_>) -> Result<LeafInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| CertError::BadDer {
        reason: e.to_string(),
    })?;
    let serial = cert.serial.to_str_radix(16);
    let uris: Vec<&str> = uri_sans(&cert)
        .map_err(|e| CertError::BadDer {
            reason: format!("subjectAltName: {e}"),
        })?
        .into_iter()
        .filter(|uri| uri.starts_with(crate::identity::SCHEME))
        .collect();
    let uri = match uris[..] {
        [] => return Err(CertError::NoSpiffeId { serial }),
        [uri] => uri,
        _ => {
            return Err(CertError::ManySpiffeIds {
                serial,
                count: uris.len(),
            })
        }
    };
    let identity = uri.parse().map_err(|source| CertError::BadSpiffeId {
        serial: serial.clone(),
        source: Box::new(source),
    })?;
    let validity = cert.validity();
    Ok(LeafInfo {
        identity,
        serial,
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
    })
}

fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

/// A workload's certificate chain (leaf first) and private key.
pub struct WorkloadCert {
    leaf: LeafInfo,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    certified: Arc<CertifiedKey>,
    /// When this process parsed it: for a certificate fresh from the CA,
    /// when it was issued, whatever the CA backdated `not_before` to.
    received: SystemTime,
}

impl WorkloadCert {
    /// Parses a PEM chain (leaf first, intermediates after; a trailing root
    /// is harmless) and a PEM private key.
    pub fn from_pem(
        chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, CertError> {
        let chain = rustls_pemfile::certs(&mut chain_pem.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CertError::Pem {
                what: "certificate chain",
                source,
            })?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_ref())
            .map_err(|source| CertError::Pem {
                what: "private key",
                source,
            })?
            .ok_or(CertError::NoKey)?;
        Self::from_der(chain, key)
    }

    /// Builds from DER; the identity comes from the leaf's URI SAN.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CertError> {
        let leaf = parse_leaf(chain.first().ok_or(CertError::EmptyChain)?)?;
        let key_error = |source| CertError::Key {
            identity: leaf.identity.clone(),
            source,
        };
        let signing_key = any_supported_type(&key).map_err(key_error)?;
        let certified = CertifiedKey::new(chain.clone(), signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => return Err(key_error(e)),
        }
        Ok(WorkloadCert {
            leaf,
            chain,
            key,
            certified: Arc::new(certified),
            received: SystemTime::now(),
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.leaf.identity
    }

    /// Leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    pub fn not_before(&self) -> SystemTime {
        self.leaf.not_before
    }

    pub fn not_after(&self) -> SystemTime {
        self.leaf.not_after
    }

    /// When this certificate was parsed (see [`renewal_due`]).
    ///
    /// [`renewal_due`]: crate::ca_client::renewal_due
    pub fn received(&self) -> SystemTime {
        self.received
    }

    /// The leaf's serial number, lowercase hex without leading zeros.
    pub fn serial(&self) -> &str {
        &self.leaf.serial
    }

    /// Chain and signing key as rustls presents them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.leaf.identity.to_string())
            .field("serial", &self.leaf.serial)
            .field("not_after", &self.leaf.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The mesh roots that peer chains must lead to (one or more, e.g. old and
/// new root during a CA rotation).
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl TrustBundle {
    /// Parses one or more PEM root certificates.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, CertError> {
        let certs = rustls_pemfile::certs(&mut pem.as_ref())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CertError::Pem {
                what: "trust bundle",
                source,
            })?;
        Self::from_der(certs)
    }

    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<Self, CertError> {
        if certs.is_empty() {
            return Err(CertError::EmptyBundle);
        }
        let mut roots = RootCertStore::empty();
        for (index, cert) in certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|source| CertError::BadRoot { index, source })?;
        }
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| CertError::Verifier {
                    reason: e.to_string(),
                })?;
        Ok(TrustBundle {
            certs,
            roots,
            client_verifier,
        })
    }

    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// webpki chain verification for client certificates (no name checks).
    pub(crate) fn client_verifier(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.client_verifier
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.certs.len())
            .finish()
    }
}
