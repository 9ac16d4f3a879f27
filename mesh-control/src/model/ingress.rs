//! Ingress gateways: `networking.istio.io` `Gateway`s (docs/contracts/gateway-xds.md),
//! as the control plane holds them after validation. Their pods are the
//! pods whose labels match every label of the selector, in any namespace.
use std::collections::BTreeMap;

/// `servers[].port.protocol`, as Istio spells it (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Redis,
    Mysql,
}

impl Protocol {
    pub const NAMES: &'static str =
        "HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, MONGO, REDIS, MYSQL";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "HTTP" => Self::Http,
            "HTTP2" => Self::Http2,
            "GRPC" => Self::Grpc,
            "GRPC-WEB" => Self::GrpcWeb,
            "HTTPS" => Self::Https,
            "TLS" => Self::Tls,
            "TCP" => Self::Tcp,
            "MONGO" => Self::Mongo,
            "REDIS" => Self::Redis,
            "MYSQL" => Self::Mysql,
            _ => return None,
        })
    }

    /// As Istio spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Http2 => "HTTP2",
            Self::Grpc => "GRPC",
            Self::GrpcWeb => "GRPC-WEB",
            Self::Https => "HTTPS",
            Self::Tls => "TLS",
            Self::Tcp => "TCP",
            Self::Mongo => "MONGO",
            Self::Redis => "REDIS",
            Self::Mysql => "MYSQL",
        }
    }

    /// Plain-text HTTP: one filter chain without a match, routes `http.<port>`.
    pub fn is_plain_http(self) -> bool {
        matches!(self, Self::Http | Self::Http2 | Self::Grpc | Self::GrpcWeb)
    }
}

/// `servers[].tls.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}

impl TlsMode {
    pub const NAMES: &'static str =
        "PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PASSTHROUGH" => Self::Passthrough,
            "SIMPLE" => Self::Simple,
            "MUTUAL" => Self::Mutual,
            "AUTO_PASSTHROUGH" => Self::AutoPassthrough,
            "ISTIO_MUTUAL" => Self::IstioMutual,
            "OPTIONAL_MUTUAL" => Self::OptionalMutual,
            _ => return None,
        })
    }
}

impl TlsMode {
    /// As Istio spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passthrough => "PASSTHROUGH",
            Self::Simple => "SIMPLE",
            Self::Mutual => "MUTUAL",
            Self::AutoPassthrough => "AUTO_PASSTHROUGH",
            Self::IstioMutual => "ISTIO_MUTUAL",
            Self::OptionalMutual => "OPTIONAL_MUTUAL",
        }
    }
}

/// `servers[].tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// `None` when only `httpsRedirect` is set (an HTTP server).
    pub mode: Option<TlsMode>,
    pub https_redirect: bool,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub credential_name: Option<String>,
}

/// One `servers[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub port: u16,
    /// `port.name`: part of an HTTPS server's route configuration name.
    pub port_name: String,
    pub protocol: Protocol,
    /// As written, possibly `<namespace>/<host>` (`.` = the Gateway's).
    pub hosts: Vec<String>,
    pub tls: Option<ServerTls>,
}

/// How a gateway port serves its servers (a port serves one kind: its
/// first server's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// Plain HTTP: one chain without a match, routes `http.<port>`.
    PlainHttp,
    /// Opaque TCP (`TCP`, `MONGO`, `MYSQL`, `REDIS`): one chain relaying
    /// bytes to the first matching `tcp[]` route.
    Tcp,
    /// TLS: chains picked by SNI (HTTPS or TLS terminated, or passed
    /// through untouched).
    Sni,
}

/// What one server's chains do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    PlainHttp,
    Tcp,
    /// HTTPS with SIMPLE or MUTUAL TLS: terminated, then HTTP routes.
    HttpsTerminate,
    /// TLS with SIMPLE or MUTUAL: terminated, then `tcp[]` routes.
    TlsTerminate,
    /// TLS (or HTTPS) with PASSTHROUGH: routed by SNI to `tls[]` routes,
    /// bytes untouched.
    Passthrough,
}

impl ServerMode {
    pub fn port_kind(self) -> PortKind {
        match self {
            Self::PlainHttp => PortKind::PlainHttp,
            Self::Tcp => PortKind::Tcp,
            Self::HttpsTerminate | Self::TlsTerminate | Self::Passthrough => PortKind::Sni,
        }
    }
}

impl Server {
    /// How the gateway serves this server, or why it does not.
    pub fn mode(&self) -> Result<ServerMode, String> {
        let mode = self.tls.as_ref().and_then(|t| t.mode);
        let unsupported = |m: TlsMode| {
            format!(
                "{} with tls.mode {} is not supported yet (SIMPLE, MUTUAL and PASSTHROUGH are)",
                self.protocol.as_str(),
                m.as_str()
            )
        };
        match self.protocol {
            p if p.is_plain_http() => Ok(ServerMode::PlainHttp),
            Protocol::Tcp | Protocol::Mongo | Protocol::Mysql | Protocol::Redis => {
                Ok(ServerMode::Tcp)
            }
            Protocol::Https | Protocol::Tls => match mode {
                Some(TlsMode::Simple | TlsMode::Mutual) if self.protocol == Protocol::Https => {
                    Ok(ServerMode::HttpsTerminate)
                }
                Some(TlsMode::Simple | TlsMode::Mutual) => Ok(ServerMode::TlsTerminate),
                Some(TlsMode::Passthrough) => Ok(ServerMode::Passthrough),
                Some(m) => Err(unsupported(m)),
                None => Err(format!("{} without tls.mode", self.protocol.as_str())),
            },
            p => Err(format!("protocol {} is not supported", p.as_str())),
        }
    }

    /// Why the gateway does not serve this server, if it does not.
    pub fn unsupported(&self) -> Option<String> {
        self.mode().err()
    }
}

/// A `networking.istio.io` Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressGateway {
    pub name: String,
    pub namespace: String,
    /// File it was read from (for findings).
    pub file: String,
    /// Empty: selects no pod.
    pub selector: BTreeMap<String, String>,
    /// `Some(ns)`: only pods of namespace `ns` (a Gateway API Gateway's
    /// pods are in its namespace); `None`: pods of any namespace.
    pub pods_namespace: Option<String>,
    pub servers: Vec<Server>,
}

impl IngressGateway {
    /// `<namespace>/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// True when the pod labelled `labels` is one of this Gateway's.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty() && self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// True when `w` is one of this Gateway's pods.
    pub fn selects_workload(&self, w: &super::Workload) -> bool {
        self.pods_namespace
            .as_ref()
            .is_none_or(|ns| *ns == w.namespace)
            && self.selects(&w.labels)
    }

    /// True when `gateways[]` entry `name`, written in namespace
    /// `namespace` (a VirtualService's), names this Gateway.
    pub fn named_by(&self, name: &str, namespace: &str) -> bool {
        match name.split_once('/') {
            Some((ns, n)) => ns == self.namespace && n == self.name,
            None => namespace == self.namespace && name == self.name,
        }
    }
}
