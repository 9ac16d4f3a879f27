//! The mesh CA: a self-signed ECDSA P-256 root (generated, or loaded from
//! PEM) that signs workload certificates from CSRs — exactly one SPIFFE URI
//! SAN in the mesh's trust domain — and the control plane's own serving
//! certificate for 15012.
//!
//! The root is persisted in a directory (`ca-cert.pem`, and `ca-key.pem`
//! with mode 0600) so a restarted control plane keeps it: agents keep their
//! trust bundle and their certificates stay valid across the restart.
mod server_tls;
mod spiffe;

use std::{
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber,
};
use time::OffsetDateTime;

pub use server_tls::{server_tls_acceptor, server_tls_config, ServerCertResolver, ServerNames};
pub use spiffe::parse_spiffe_id;

use crate::model::Identity;

/// Root certificate file in a CA directory.
pub const CERT_FILE: &str = "ca-cert.pem";
/// Root private key file in a CA directory (mode 0600).
pub const KEY_FILE: &str = "ca-key.pem";
/// The trust bundle written for agents in local mode (the root alone).
pub const TRUST_BUNDLE_FILE: &str = "root-cert.pem";
/// Shortest certificate lifetime issued (short TTLs are for rotation tests).
pub const MIN_CERT_TTL: Duration = Duration::from_secs(10);
/// Longest workload certificate lifetime issued.
pub const MAX_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Root lifetime when generated without one given: 10 years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start one minute in the past, for clock skew between nodes.
const BACKDATE: time::Duration = time::Duration::minutes(1);

/// What went wrong, with which input.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CSR is not a valid PKCS#10 request (PEM, signature, extensions).
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),
    /// The CSR's subject alternative names are not one SPIFFE ID of this
    /// trust domain.
    #[error("CSR identity refused: {0}")]
    Identity(String),
    /// The CSR asks for an identity other than the one the caller holds.
    #[error("CSR asks for {requested}, but the caller is {expected}")]
    IdentityMismatch { requested: String, expected: String },
    /// A root certificate or key that cannot be used.
    #[error("CA root: {0}")]
    InvalidRoot(String),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The serving TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// rcgen failed to build or sign a certificate.
    #[error("{what}: {error}")]
    Certificate {
        what: &'static str,
        error: rcgen::Error,
    },
}

/// A certificate and its fresh private key (the control plane's own).
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Leaf first, root last.
    pub chain_pem: Vec<String>,
    /// PKCS#8.
    pub key_pem: String,
}

/// The mesh certificate authority.
pub struct Ca {
    trust_domain: String,
    root_pem: String,
    root_not_after: OffsetDateTime,
    /// The root as rcgen's issuer (subject name and key identifier).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("root_not_after", &self.root_not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed root (ECDSA P-256) valid for `root_ttl`.
    pub fn generate(trust_domain: &str, root_ttl: Duration) -> Result<Ca, CaError> {
        let key = KeyPair::generate().map_err(cert_error("generating the root key"))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, trust_domain);
        name.push(DnType::CommonName, "mesh root CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + to_time(root_ttl);
        params.serial_number = Some(random_serial());
        let root = params
            .self_signed(&key)
            .map_err(cert_error("self-signing the root"))?;
        let root_pem = root.pem();
        Ca::load(trust_domain, &root_pem, &key.serialize_pem())
    }

    /// A CA from an existing root certificate and its private key (PEM,
    /// PKCS#8; ECDSA P-256/P-384, Ed25519 or RSA). The certificate must be a
    /// CA, currently valid, and match the key.
    pub fn load(
        trust_domain: &str,
        root_cert_pem: &str,
        root_key_pem: &str,
    ) -> Result<Ca, CaError> {
        let invalid = |m: String| CaError::InvalidRoot(m);
        let key = KeyPair::from_pem(root_key_pem)
            .map_err(|e| invalid(format!("private key is not a usable PKCS#8 PEM key: {e}")))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(root_cert_pem.as_bytes())
            .map_err(|e| invalid(format!("certificate is not PEM: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| invalid(format!("certificate does not parse: {e}")))?;
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err(invalid(
                "certificate is not a CA (basicConstraints CA:TRUE missing)".into(),
            ));
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after <= OffsetDateTime::now_utc() {
            return Err(invalid(format!("certificate expired at {not_after}")));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                "the private key does not belong to the certificate".into(),
            ));
        }
        let issuer = CertificateParams::from_ca_cert_pem(root_cert_pem)
            .map_err(cert_error("reading the root certificate"))?
            .self_signed(&key)
            .map_err(cert_error("preparing the root as issuer"))?;
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            // Re-encode: a file may hold text around the PEM block.
            root_pem: pem_encode("CERTIFICATE", &pem.contents),
            root_not_after: not_after,
            issuer,
            key,
        })
    }

    /// Loads the root persisted in `dir`, or generates one and persists it
    /// there (creating `dir`, mode 0700). Returns the CA and whether it was
    /// generated. Only one of the two files present is an error: never
    /// overwrite half a CA.
    pub fn load_or_generate(
        dir: &Path,
        trust_domain: &str,
        root_ttl: Duration,
    ) -> Result<(Ca, bool), CaError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Ok((Ca::load_dir(dir, trust_domain)?, false)),
            (false, false) => {
                let ca = Ca::generate(trust_domain, root_ttl)?;
                ca.save(dir)?;
                Ok((ca, true))
            }
            (has_cert, _) => Err(CaError::InvalidRoot(format!(
                "{} exists but {} does not; restore it or remove both to generate a new root",
                if has_cert {
                    cert_path.display()
                } else {
                    key_path.display()
                },
                if has_cert {
                    key_path.display()
                } else {
                    cert_path.display()
                },
            ))),
        }
    }

    /// Loads `ca-cert.pem` and `ca-key.pem` from `dir`.
    pub fn load_dir(dir: &Path, trust_domain: &str) -> Result<Ca, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|error| CaError::Io { path, error })
        };
        let key_path = dir.join(KEY_FILE);
        warn_if_key_readable(&key_path);
        Ca::load(trust_domain, &read(CERT_FILE)?, &read(KEY_FILE)?).map_err(|e| {
            CaError::InvalidRoot(format!(
                "{} / {}: {e}",
                dir.join(CERT_FILE).display(),
                key_path.display()
            ))
        })
    }

    /// Writes `ca-cert.pem` and `ca-key.pem` (0600) into `dir`, each
    /// replaced atomically.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| CaError::Io {
                path: dir.to_path_buf(),
                error,
            })?;
        write_atomic(
            &dir.join(KEY_FILE),
            self.key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_atomic(&dir.join(CERT_FILE), self.root_pem.as_bytes(), 0o644)
    }

    /// Writes the trust bundle (the root certificate) to `path`.
    pub fn write_trust_bundle(&self, path: &Path) -> Result<(), CaError> {
        write_atomic(path, self.root_pem.as_bytes(), 0o644)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// When the root expires.
    pub fn root_not_after(&self) -> OffsetDateTime {
        self.root_not_after
    }

    /// The identity a CSR asks for: its single SAN must be a SPIFFE URI of
    /// this trust domain. Also checks the CSR's signature.
    pub fn csr_identity(&self, csr_pem: &str) -> Result<Identity, CaError> {
        let csr = parse_csr(csr_pem)?;
        self.identity_of(&csr)
    }

    /// Signs a workload CSR for `ttl` (clamped to 10 s … 24 h and to the
    /// root's expiry). Returns PEM certificates: leaf, root.
    pub fn sign_csr(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, CaError> {
        let csr = parse_csr(csr_pem)?;
        let identity = self.identity_of(&csr)?;
        self.sign_identity(&csr.public_key, &identity, ttl)
    }

    /// [`Ca::sign_csr`] for a caller already authenticated as `expected`
    /// (e.g. by its current certificate): the CSR must ask for that identity.
    pub fn sign_csr_for(
        &self,
        csr_pem: &str,
        expected: &Identity,
        ttl: Duration,
    ) -> Result<Vec<String>, CaError> {
        let csr = parse_csr(csr_pem)?;
        let identity = self.identity_of(&csr)?;
        if &identity != expected {
            return Err(CaError::IdentityMismatch {
                requested: identity.to_string(),
                expected: expected.to_string(),
            });
        }
        self.sign_identity(&csr.public_key, &identity, ttl)
    }

    /// A serving certificate with a fresh P-256 key for the control plane
    /// (15012): DNS and IP SANs, serverAuth, `ttl` (at least 10 s, at most
    /// the root's remaining life).
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        ttl: Duration,
    ) -> Result<IssuedCert, CaError> {
        let key = KeyPair::generate().map_err(cert_error("generating a server key"))?;
        let mut sans = vec![];
        for name in dns_names {
            let name = rcgen::Ia5String::try_from(name.as_str())
                .map_err(|e| CaError::Identity(format!("DNS name {name:?}: {e}")))?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut params = self.leaf_params(ttl.max(MIN_CERT_TTL), sans);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(cert_error("signing the server certificate"))?;
        Ok(IssuedCert {
            chain_pem: vec![leaf.pem(), self.root_pem.clone()],
            key_pem: key.serialize_pem(),
        })
    }

    fn identity_of(&self, csr: &CertificateSigningRequestParams) -> Result<Identity, CaError> {
        let mut uris = vec![];
        for san in &csr.params.subject_alt_names {
            match san {
                SanType::URI(uri) => uris.push(uri.as_str().to_string()),
                SanType::DnsName(name) => {
                    return Err(CaError::Identity(format!(
                        "the CSR has a DNS SAN ({}); workload certificates carry exactly one SPIFFE URI SAN",
                        name.as_str()
                    )))
                }
                SanType::IpAddress(ip) => {
                    return Err(CaError::Identity(format!(
                        "the CSR has an IP SAN ({ip}); workload certificates carry exactly one SPIFFE URI SAN"
                    )))
                }
                other => {
                    return Err(CaError::Identity(format!(
                        "the CSR has a SAN that is not a URI ({other:?}); workload certificates carry exactly one SPIFFE URI SAN"
                    )))
                }
            }
        }
        let uri = match uris.as_slice() {
            [uri] => uri,
            [] => {
                return Err(CaError::Identity(format!(
                    "the CSR has no URI SAN; a SPIFFE ID spiffe://{}/ns/<namespace>/sa/<service account> is required",
                    self.trust_domain
                )))
            }
            more => {
                return Err(CaError::Identity(format!(
                    "the CSR has {} URI SANs ({}); exactly one SPIFFE ID is allowed",
                    more.len(),
                    more.join(", ")
                )))
            }
        };
        let identity = parse_spiffe_id(uri).map_err(CaError::Identity)?;
        if identity.trust_domain != self.trust_domain {
            return Err(CaError::Identity(format!(
                "{uri} is in trust domain {:?}; this CA signs only for {:?}",
                identity.trust_domain, self.trust_domain
            )));
        }
        Ok(identity)
    }

    fn sign_identity(
        &self,
        public_key: &impl PublicKeyData,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<Vec<String>, CaError> {
        let uri = rcgen::Ia5String::try_from(identity.to_string())
            .map_err(|e| CaError::Identity(format!("{identity}: {e}")))?;
        let mut params = self.leaf_params(
            ttl.clamp(MIN_CERT_TTL, MAX_CERT_TTL),
            vec![SanType::URI(uri)],
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = params
            .signed_by(public_key, &self.issuer, &self.key)
            .map_err(cert_error("signing the workload certificate"))?;
        Ok(vec![leaf.pem(), self.root_pem.clone()])
    }

    fn leaf_params(&self, ttl: Duration, sans: Vec<SanType>) -> CertificateParams {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        // Identity lives in the SAN; a non-empty subject keeps the
        // (non-critical) SAN extension RFC 5280-conformant.
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, self.trust_domain.as_str());
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = now - BACKDATE;
        params.not_after = (now + to_time(ttl)).min(self.root_not_after);
        params
    }
}

/// The control-plane CA is the signer of the CA gRPC service.
impl crate::serve::CsrSigner for Ca {
    fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, String> {
        self.sign_csr(csr_pem, ttl).map_err(|e| e.to_string())
    }

    fn requested_identity(&self, csr_pem: &str) -> Result<Identity, String> {
        self.csr_identity(csr_pem).map_err(|e| e.to_string())
    }
}

fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, CaError> {
    CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
        CaError::InvalidCsr(match e {
            rcgen::Error::CouldNotParseCertificationRequest => "not a PEM-encoded PKCS#10 certificate request".into(),
            rcgen::Error::RingUnspecified => "its signature does not verify".into(),
            rcgen::Error::UnsupportedExtension => {
                "it requests an extension other than subjectAltName, keyUsage and extendedKeyUsage".into()
            }
            rcgen::Error::UnsupportedSignatureAlgorithm => {
                "its key or signature algorithm is not supported (use ECDSA P-256/P-384, Ed25519 or RSA)".into()
            }
            other => other.to_string(),
        })
    })
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so it encodes in 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn to_time(ttl: Duration) -> time::Duration {
    time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX)
}

fn cert_error(what: &'static str) -> impl Fn(rcgen::Error) -> CaError {
    move |error| CaError::Certificate { what, error }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes through a temporary file and a rename, so a crash never leaves
/// a truncated key or certificate.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| CaError::Io { path, error }
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

fn warn_if_key_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the CA private key is readable by others than its owner; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests;
