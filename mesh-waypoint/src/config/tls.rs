//! A filter chain's `envoy.transport_sockets.tls` `DownstreamTlsContext`
//! → [`TlsContext`]: where the server certificate and the client CA come
//! from (file names, or SDS names `kubernetes://<secret>` a gateway
//! resolves in its credential directory). Reading the files and building
//! the TLS server is the gateway's (`gateway::tls`).
use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, transport_socket};
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, DownstreamTlsContext,
};

use super::{at, wkt::decode_any, ConfigError};

pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
const DOWNSTREAM_TLS_TYPE: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// Where a PEM comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file path.
    File(String),
    /// An SDS secret name (`kubernetes://<secret>`, Istio's credentialName).
    Sds(String),
}

/// The server side of one TLS filter chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsContext {
    /// Certificate chain and key: files, or one SDS name for both.
    pub certificate: CertificateSource,
    /// Client certificates are required and verified against `client_ca`.
    pub require_client_certificate: bool,
    pub client_ca: Option<PemSource>,
    /// ALPN offered (`h2`, `http/1.1` when empty).
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    Files { chain: String, key: String },
    Sds(String),
}

fn filename(d: Option<&DataSource>, field: &str) -> Result<String, ConfigError> {
    match d.and_then(|d| d.specifier.as_ref()) {
        Some(Specifier::Filename(f)) if !f.is_empty() => Ok(f.clone()),
        Some(_) => Err(ConfigError::new(field, "only filename is supported")),
        None => Err(ConfigError::new(field, "missing")),
    }
}

/// The chain's TLS context; None for a chain without `transport_socket`.
pub fn translate(
    ts: Option<&TransportSocket>,
    field: &str,
) -> Result<Option<TlsContext>, ConfigError> {
    let Some(ts) = ts else { return Ok(None) };
    if ts.name != TLS_TRANSPORT_SOCKET {
        return Err(ConfigError::new(
            at(field, "name"),
            format!("only {TLS_TRANSPORT_SOCKET} is supported"),
        ));
    }
    let any = match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(a)) => a,
        None => return Err(ConfigError::new(at(field, "typed_config"), "missing")),
    };
    let ctx: DownstreamTlsContext =
        decode_any(any, DOWNSTREAM_TLS_TYPE, &at(field, "typed_config"))?;
    let cf = at(field, "typed_config.common_tls_context");
    let common = ctx
        .common_tls_context
        .as_ref()
        .ok_or_else(|| ConfigError::new(&cf, "missing"))?;
    // `credentialName` wins over file paths (Istio): an SDS name first.
    let certificate = if let Some(s) = common.tls_certificate_sds_secret_configs.first() {
        CertificateSource::Sds(s.name.clone())
    } else if let Some(c) = common.tls_certificates.first() {
        let f = at(&cf, "tls_certificates[0]");
        CertificateSource::Files {
            chain: filename(c.certificate_chain.as_ref(), &at(&f, "certificate_chain"))?,
            key: filename(c.private_key.as_ref(), &at(&f, "private_key"))?,
        }
    } else {
        return Err(ConfigError::new(
            &cf,
            "no tls_certificates or tls_certificate_sds_secret_configs",
        ));
    };
    let client_ca = match &common.validation_context_type {
        Some(ValidationContextType::ValidationContext(v)) => v
            .trusted_ca
            .as_ref()
            .map(|ca| {
                filename(Some(ca), &at(&cf, "validation_context.trusted_ca")).map(PemSource::File)
            })
            .transpose()?,
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            Some(PemSource::Sds(s.name.clone()))
        }
        Some(_) => {
            return Err(ConfigError::new(
                at(&cf, "validation_context_type"),
                "only validation_context or validation_context_sds_secret_config",
            ))
        }
        None => None,
    };
    let require_client_certificate = ctx.require_client_certificate.is_some_and(|b| b.value);
    if require_client_certificate && client_ca.is_none() {
        return Err(ConfigError::new(
            at(field, "typed_config.require_client_certificate"),
            "needs a validation context with a trusted CA",
        ));
    }
    Ok(Some(TlsContext {
        certificate,
        require_client_certificate,
        client_ca,
        alpn: common.alpn_protocols.clone(),
    }))
}
