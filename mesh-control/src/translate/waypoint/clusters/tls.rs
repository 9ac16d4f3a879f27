//! A DestinationRule's `tls` for a ServiceEntry host → the cluster's
//! `envoy.transport_sockets.tls` `UpstreamTlsContext`, as istiod writes
//! it: `sni` (the rule's, else the host), a validation context (the
//! `caCertificates` file, else the system bundle [`SYSTEM_CA_BUNDLE`]; the rule's
//! `subjectAltNames`, else the entry's, else the SNI), and for `MUTUAL` the client
//! certificate (files, or `credentialName` as the SDS name
//! `kubernetes://<name>`, with `kubernetes://<name>-cacert` for the CA, the
//! gateway's convention). `ISTIO_MUTUAL` is the mesh's own mTLS (HBONE)
//! and `DISABLE` plaintext: neither adds a transport socket.
use envoy_types::pb::envoy::{
    config::core::v3::{
        data_source::Specifier, transport_socket::ConfigType, DataSource, TransportSocket,
    },
    extensions::transport_sockets::tls::v3::{
        common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
        subject_alt_name_matcher::SanType,
        CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
        TlsCertificate, UpstreamTlsContext,
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher},
};
use serde_yaml::Value;

use super::pb;

pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const SDS_PREFIX: &str = "kubernetes://";
const CA_SUFFIX: &str = "-cacert";
/// The system roots as one PEM file, where Debian (the images' base) and
/// istiod's proxies keep them.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `tls.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

/// `trafficPolicy.tls` (Istio's `ClientTLSSettings`), read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub mode: Mode,
    pub sni: Option<String>,
    pub ca_certificates: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub client_certificate: Option<String>,
    pub private_key: Option<String>,
    pub credential_name: Option<String>,
}

fn string(map: &serde_yaml::Mapping, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("tls.{key}: not a string")),
    }
}

/// Reads `tls` as written; the error names the field.
pub fn parse(v: &Value) -> Result<ClientTls, String> {
    let Value::Mapping(map) = v else {
        return Err("tls: not a mapping".into());
    };
    let mode = match string(map, "mode")?.as_deref() {
        None | Some("DISABLE") => Mode::Disable,
        Some("SIMPLE") => Mode::Simple,
        Some("MUTUAL") => Mode::Mutual,
        Some("ISTIO_MUTUAL") => Mode::IstioMutual,
        Some(other) => return Err(format!("tls.mode: unknown mode {other:?}")),
    };
    let subject_alt_names = match map.get("subjectAltNames") {
        None | Some(Value::Null) => vec![],
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err("tls.subjectAltNames: not a list of strings".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("tls.subjectAltNames: not a list".into()),
    };
    let tls = ClientTls {
        mode,
        sni: string(map, "sni")?,
        ca_certificates: string(map, "caCertificates")?,
        subject_alt_names,
        client_certificate: string(map, "clientCertificate")?,
        private_key: string(map, "privateKey")?,
        credential_name: string(map, "credentialName")?,
    };
    if tls.mode == Mode::Mutual
        && tls.credential_name.is_none()
        && (tls.client_certificate.is_none() || tls.private_key.is_none())
    {
        return Err(
            "tls: MUTUAL needs clientCertificate and privateKey, or credentialName".to_string(),
        );
    }
    if let Some(c) = &tls.credential_name {
        if c.contains('/') || c == "." || c == ".." {
            return Err(format!("tls.credentialName: {c:?} is not a secret name"));
        }
    }
    Ok(tls)
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

fn san_matcher(san: &str) -> SubjectAltNameMatcher {
    let san_type = if san.contains("://") {
        SanType::Uri
    } else if san.parse::<std::net::IpAddr>().is_ok() {
        SanType::IpAddress
    } else {
        SanType::Dns
    };
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(san.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The transport socket for `tls` towards `host`, whose ServiceEntry
/// lists `entry_sans`; None for `DISABLE` and `ISTIO_MUTUAL`.
pub fn transport_socket(
    tls: &ClientTls,
    host: &str,
    entry_sans: &[String],
) -> Option<TransportSocket> {
    if matches!(tls.mode, Mode::Disable | Mode::IstioMutual) {
        return None;
    }
    let sni = tls.sni.clone().unwrap_or_else(|| host.to_string());
    // Neither the rule nor the entry names any: the certificate must name
    // the server the SNI asks for.
    let sans = if !tls.subject_alt_names.is_empty() {
        tls.subject_alt_names.clone()
    } else if !entry_sans.is_empty() {
        entry_sans.to_vec()
    } else {
        vec![sni.clone()]
    };
    let mut validation = CertificateValidationContext {
        match_typed_subject_alt_names: sans.iter().map(|s| san_matcher(s)).collect(),
        ..Default::default()
    };
    match &tls.ca_certificates {
        Some(ca) => validation.trusted_ca = Some(file(ca)),
        // As istiod: the system's bundle by file (Envoy refuses SAN
        // checks without a trusted CA, and `system_root_certs` is none).
        None if tls.credential_name.is_none() => {
            validation.trusted_ca = Some(file(SYSTEM_CA_BUNDLE));
        }
        None => {}
    }
    let sds = |name: String| SdsSecretConfig {
        name,
        sds_config: Some(pb::ads()),
    };
    let mut common = CommonTlsContext::default();
    match (&tls.mode, &tls.credential_name) {
        (Mode::Mutual, Some(cred)) => {
            common.tls_certificate_sds_secret_configs = vec![sds(format!("{SDS_PREFIX}{cred}"))];
        }
        (Mode::Mutual, None) => {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: tls.client_certificate.as_deref().map(file),
                private_key: tls.private_key.as_deref().map(file),
                ..Default::default()
            }];
        }
        _ => {}
    }
    common.validation_context_type = Some(match (&tls.credential_name, &tls.ca_certificates) {
        // The secret's `ca.crt`, with the SAN checks beside it.
        (Some(cred), None) => {
            ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
                default_validation_context: Some(validation),
                validation_context_sds_secret_config: Some(sds(format!(
                    "{SDS_PREFIX}{cred}{CA_SUFFIX}"
                ))),
                ..Default::default()
            })
        }
        _ => ValidationContextType::ValidationContext(validation),
    });
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni,
        ..Default::default()
    };
    Some(TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pb::any(UPSTREAM_TLS_TYPE, &ctx))),
    })
}
