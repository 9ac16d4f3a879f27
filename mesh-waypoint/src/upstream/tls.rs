//! TLS origination: a cluster's `envoy.transport_sockets.tls`
//! `UpstreamTlsContext` → [`TlsSpec`] (checked field by field) → a rustls
//! client ([`TlsOrigin`]) that wraps every connection to the cluster's
//! endpoints.
//!
//! As Envoy: the `sni` is sent when set; ALPN only when listed; the
//! server's chain is checked against `trusted_ca` (a file, or an SDS
//! name resolved in the credential directory as the gateway does) and
//! the certificate must carry one of `match_typed_subject_alt_names`
//! (DNS, IP or URI) when any is listed. Unlike Envoy, a context without a
//! CA is verified against the system roots (`rustls-native-certs`), never
//! left unverified. A client certificate (files or SDS) is presented when
//! configured. TLS 1.2 and 1.3.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use envoy_types::pb::envoy::{
    config::core::v3::{data_source::Specifier, transport_socket, DataSource, TransportSocket},
    extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
        CertificateValidationContext, UpstreamTlsContext,
    },
    r#type::matcher::v3::string_matcher::MatchPattern,
};
use mesh_xds::FieldRejection;
use prost::Message;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::ParsedCertificate,
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const SDS_PREFIX: &str = "kubernetes://";
const CA_SUFFIX: &str = "-cacert";
const FIELD: &str = "transport_socket.typed_config";

/// Where a PEM file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// `kubernetes://<secret>`: `<credential dir>/<secret>/…`.
    Sds(String),
}

/// A subject alternative name the server's certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
}

/// What of an `UpstreamTlsContext` the waypoint honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// Sent as SNI when not empty.
    pub sni: String,
    /// None: the system roots.
    pub ca: Option<Source>,
    /// Empty: any certificate the CA signed.
    pub sans: Vec<San>,
    /// `(chain, key)` files, or one SDS name for both.
    pub client: Option<ClientCert>,
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    Files { chain: PathBuf, key: PathBuf },
    Sds(String),
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> FieldRejection {
    (field.into(), reason.into())
}

fn filename(d: Option<&DataSource>, field: &str) -> Result<PathBuf, FieldRejection> {
    match d.and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::Filename(f)) if !f.is_empty() => Ok(PathBuf::from(f)),
        Some(_) => Err(reject(field, "only filename is supported")),
        None => Err(reject(field, "missing")),
    }
}

fn sans(v: &CertificateValidationContext, field: &str) -> Result<Vec<San>, FieldRejection> {
    v.match_typed_subject_alt_names
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let f = format!("{field}.match_typed_subject_alt_names[{i}]");
            let Some(MatchPattern::Exact(value)) =
                m.matcher.as_ref().and_then(|m| m.match_pattern.as_ref())
            else {
                return Err(reject(
                    format!("{f}.matcher"),
                    "only exact matches are supported",
                ));
            };
            match SanType::try_from(m.san_type) {
                Ok(SanType::Dns) => Ok(San::Dns(value.clone())),
                Ok(SanType::Uri) => Ok(San::Uri(value.clone())),
                Ok(SanType::IpAddress) => value
                    .parse()
                    .map(San::Ip)
                    .map_err(|_| reject(format!("{f}.matcher.exact"), "not an IP address")),
                _ => Err(reject(
                    format!("{f}.san_type"),
                    "only DNS, URI and IP_ADDRESS are supported",
                )),
            }
        })
        .collect()
}

impl TlsSpec {
    /// Reads a cluster's transport socket; None when it has none.
    pub fn from_proto(ts: Option<&TransportSocket>) -> Result<Option<Self>, FieldRejection> {
        let Some(ts) = ts else { return Ok(None) };
        if ts.name != TLS_TRANSPORT_SOCKET {
            return Err(reject(
                "transport_socket.name",
                format!("only {TLS_TRANSPORT_SOCKET} is supported"),
            ));
        }
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
            return Err(reject(FIELD, "missing"));
        };
        if any.type_url != UPSTREAM_TLS_TYPE {
            return Err(reject(
                FIELD,
                format!("{} is not an UpstreamTlsContext", any.type_url),
            ));
        }
        let ctx = UpstreamTlsContext::decode(any.value.as_slice())
            .map_err(|e| reject(FIELD, format!("not an UpstreamTlsContext: {e}")))?;
        let cf = format!("{FIELD}.common_tls_context");
        let common = ctx.common_tls_context.unwrap_or_default();
        let client = if let Some(s) = common.tls_certificate_sds_secret_configs.first() {
            Some(ClientCert::Sds(s.name.clone()))
        } else if let Some(c) = common.tls_certificates.first() {
            let f = format!("{cf}.tls_certificates[0]");
            Some(ClientCert::Files {
                chain: filename(
                    c.certificate_chain.as_ref(),
                    &format!("{f}.certificate_chain"),
                )?,
                key: filename(c.private_key.as_ref(), &format!("{f}.private_key"))?,
            })
        } else {
            None
        };
        let (ca, sans) = match &common.validation_context_type {
            None => (None, vec![]),
            Some(ValidationContextType::ValidationContext(v)) => {
                let f = format!("{cf}.validation_context");
                let ca = v
                    .trusted_ca
                    .as_ref()
                    .map(|ca| filename(Some(ca), &format!("{f}.trusted_ca")).map(Source::File))
                    .transpose()?;
                (ca, sans(v, &f)?)
            }
            Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
                (Some(Source::Sds(s.name.clone())), vec![])
            }
            Some(ValidationContextType::CombinedValidationContext(c)) => {
                let f = format!("{cf}.combined_validation_context");
                let default = c.default_validation_context.clone().unwrap_or_default();
                let ca = match (&c.validation_context_sds_secret_config, &default.trusted_ca) {
                    (Some(s), _) => Some(Source::Sds(s.name.clone())),
                    (None, Some(ca)) => Some(Source::File(filename(
                        Some(ca),
                        &format!("{f}.default_validation_context.trusted_ca"),
                    )?)),
                    (None, None) => None,
                };
                (
                    ca,
                    sans(&default, &format!("{f}.default_validation_context"))?,
                )
            }
            Some(_) => {
                return Err(reject(
                    format!("{cf}.validation_context_type"),
                    "only validation_context, validation_context_sds_secret_config or \
                     combined_validation_context",
                ))
            }
        };
        if !ctx.sni.is_empty() && ServerName::try_from(ctx.sni.as_str()).is_err() {
            return Err(reject(
                format!("{FIELD}.sni"),
                "not a DNS name or IP address",
            ));
        }
        Ok(Some(TlsSpec {
            sni: ctx.sni,
            ca,
            sans,
            client,
            alpn: common.alpn_protocols,
        }))
    }
}

/// `kubernetes://C` → `C`.
fn secret_name(sds: &str) -> Option<&str> {
    sds.strip_prefix(SDS_PREFIX)
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parsing {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("parsing {}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key", path.display()))
}

/// The system's roots, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for e in &loaded.errors {
                tracing::warn!(error = %e, "system root certificates: not all could be read");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            Arc::new(roots)
        })
        .clone()
}

/// A built TLS client for one cluster.
#[derive(Debug)]
pub struct TlsOrigin {
    pub spec: TlsSpec,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl PartialEq for TlsOrigin {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Eq for TlsOrigin {}

impl TlsOrigin {
    /// Reads the files `spec` names (SDS names in `credential_dir`) and
    /// builds the client; the error names the field whose file is bad.
    pub fn build(spec: &TlsSpec, credential_dir: &Path) -> Result<Arc<Self>, FieldRejection> {
        let cf = format!("{FIELD}.common_tls_context");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &spec.ca {
            None => system_roots(),
            Some(source) => {
                let (path, field) = match source {
                    Source::File(p) => (p.clone(), format!("{cf}.validation_context.trusted_ca")),
                    Source::Sds(name) => {
                        let field = format!("{cf}.validation_context_sds_secret_config.name");
                        let secret = secret_name(name).ok_or_else(|| {
                            reject(&field, format!("{name:?}: only {SDS_PREFIX}<secret>"))
                        })?;
                        let dir =
                            credential_dir.join(secret.strip_suffix(CA_SUFFIX).unwrap_or(secret));
                        (dir.join("ca.crt"), field)
                    }
                };
                let mut roots = RootCertStore::empty();
                for cert in read_certs(&path).map_err(|e| reject(&field, e))? {
                    roots
                        .add(cert)
                        .map_err(|e| reject(&field, format!("{}: {e}", path.display())))?;
                }
                Arc::new(roots)
            }
        };
        let verifier = Arc::new(SanVerifier {
            roots,
            sans: spec.sans.clone(),
            provider: provider.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| reject(FIELD, e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &spec.client {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let (chain, key, field) = match client {
                    ClientCert::Files { chain, key } => (
                        chain.clone(),
                        key.clone(),
                        format!("{cf}.tls_certificates[0]"),
                    ),
                    ClientCert::Sds(name) => {
                        let field = format!("{cf}.tls_certificate_sds_secret_configs[0].name");
                        let secret = secret_name(name).ok_or_else(|| {
                            reject(&field, format!("{name:?}: only {SDS_PREFIX}<secret>"))
                        })?;
                        let dir = credential_dir.join(secret);
                        (dir.join("tls.crt"), dir.join("tls.key"), field)
                    }
                };
                let certs = read_certs(&chain).map_err(|e| reject(&field, e))?;
                let key = read_key(&key).map_err(|e| reject(&field, e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| reject(&field, e.to_string()))?
            }
        };
        config.alpn_protocols = spec.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.enable_sni = !spec.sni.is_empty();
        // Without an SNI the name only satisfies the API: the verifier
        // checks the chain and the SANs, never this name.
        let server_name = ServerName::try_from(if spec.sni.is_empty() {
            "invalid"
        } else {
            spec.sni.as_str()
        })
        .map_err(|_| reject(format!("{FIELD}.sni"), "not a DNS name or IP address"))?
        .to_owned();
        Ok(Arc::new(TlsOrigin {
            spec: spec.clone(),
            config: Arc::new(config),
            server_name,
        }))
    }

    /// The TLS handshake over `io`.
    pub async fn handshake<IO>(
        &self,
        io: IO,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), io)
            .await
    }
}

/// Envoy's check: the chain up to a trusted root, then one of the SANs
/// (any certificate the roots signed when none are listed).
#[derive(Debug)]
struct SanVerifier {
    roots: Arc<RootCertStore>,
    sans: Vec<San>,
    provider: Arc<CryptoProvider>,
}

/// The URI SANs of a DER certificate; none when it does not parse.
fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
        .ok()
        .and_then(|(_, parsed)| mesh_hbone::uri_sans(&parsed).ok())
        .map(|uris| uris.into_iter().map(str::to_string).collect())
        .unwrap_or_default()
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.sans.is_empty() {
            return Ok(ServerCertVerified::assertion());
        }
        let uris = std::cell::OnceCell::new();
        let uris = || uris.get_or_init(|| uri_sans(end_entity));
        let matched = self.sans.iter().any(|san| match san {
            San::Dns(name) => ServerName::try_from(name.as_str())
                .is_ok_and(|n| rustls::client::verify_server_name(&cert, &n).is_ok()),
            San::Ip(ip) => {
                rustls::client::verify_server_name(&cert, &ServerName::IpAddress((*ip).into()))
                    .is_ok()
            }
            San::Uri(u) => uris().iter().any(|have| have == u),
        });
        if matched {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
