//! A Gateway API `Gateway` of class `istio`: its listeners, checked field
//! by field (name, port and protocol are checked for every class by
//! [`super::super::gateway`] first).
use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{
    super::{
        fields,
        objects::Origin,
        routing::{self, Cx},
    },
    Meta,
};

/// `listeners[].protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerProtocol {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
    /// An implementation-specific protocol (`example.com/proto`).
    Other(String),
}

impl ListenerProtocol {
    fn parse(s: &str) -> Self {
        match s {
            "HTTP" => Self::Http,
            "HTTPS" => Self::Https,
            "TLS" => Self::Tls,
            "TCP" => Self::Tcp,
            "UDP" => Self::Udp,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::Tls => "TLS",
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Other(s) => s,
        }
    }

    /// True for the listeners HTTPRoutes attach to.
    pub fn takes_http_routes(&self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }
}

/// `tls.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerTlsMode {
    Terminate,
    Passthrough,
}

/// A `tls.certificateRefs[]` entry (a Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    /// Absent: the Gateway's.
    pub namespace: Option<String>,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerTls {
    pub mode: ListenerTlsMode,
    pub certificate_refs: Vec<CertificateRef>,
}

/// A label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    /// `(key, operator, values)`, operator one of In, NotIn, Exists,
    /// DoesNotExist (checked).
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .match_expressions
                .iter()
                .all(|(key, op, values)| match op.as_str() {
                    "In" => labels.get(key).is_some_and(|v| values.contains(v)),
                    "NotIn" => labels.get(key).is_none_or(|v| !values.contains(v)),
                    "Exists" => labels.contains_key(key),
                    _ => !labels.contains_key(key),
                })
    }
}

/// `allowedRoutes.namespaces.from`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum AllowedNamespaces {
    #[default]
    Same,
    All,
    Selector(LabelSelector),
}

/// One `spec.listeners[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub name: String,
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Absent: every host.
    pub hostname: Option<String>,
    pub tls: Option<ListenerTls>,
    pub allowed_namespaces: AllowedNamespaces,
    /// `allowedRoutes.kinds[].kind` (group `gateway.networking.k8s.io`);
    /// empty: the kinds the protocol takes.
    pub allowed_kinds: Vec<String>,
}

/// A Gateway of class `istio`.
#[derive(Debug, Clone)]
pub(crate) struct GatewayObj {
    pub name: String,
    pub namespace: String,
    pub origin: Origin,
    pub meta: Meta,
    pub listeners: Vec<Listener>,
}

/// Reads the Gateway in `value`; `None` when it has a problem.
pub(crate) fn read(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    name: &str,
    namespace: &str,
    origin: &Origin,
    meta: Meta,
) -> Option<GatewayObj> {
    let before = cx.count();
    let mut listeners: Vec<Listener> = vec![];
    let items = fields::seq(cx.rep, value, "spec.listeners");
    for (i, item) in items.iter().enumerate() {
        let at = format!("spec.listeners[{i}]");
        let Some(listener) = read_listener(cx, item, &at) else {
            continue;
        };
        if listeners.iter().any(|l| l.name == listener.name) {
            cx.error(
                format!("{at}.name"),
                format!("listener name {:?} is used twice", listener.name),
            );
            continue;
        }
        listeners.push(listener);
    }
    if items.is_empty() && cx.count() == before {
        cx.error("spec.listeners", "required: at least one listener");
    }
    if fields::lookup(value, "spec.addresses").is_some() {
        cx.warn(
            "spec.addresses",
            "not supported: the Gateway's pods are the user's and keep their own addresses; ignored",
        );
    }
    (cx.count() == before).then(|| GatewayObj {
        name: name.to_string(),
        namespace: namespace.to_string(),
        origin: origin.clone(),
        meta,
        listeners,
    })
}

fn read_listener(cx: &mut Cx<'_, '_>, item: &Value, at: &str) -> Option<Listener> {
    let before = cx.count();
    // name, port and protocol: present and typed (checked for every class).
    let name = item.get("name").and_then(Value::as_str)?.to_string();
    fields::check_name(cx.rep, &format!("{at}.name"), &name, false);
    let port = item.get("port").and_then(Value::as_u64)? as u16;
    let protocol = ListenerProtocol::parse(item.get("protocol").and_then(Value::as_str)?);
    let hostname = match item.get("hostname").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => {
            let field = format!("{at}.hostname");
            routing::req_text(cx, v, &field).filter(|h| check_hostname(cx, h, &field))
        }
    };
    let tls = match item.get("tls").filter(|v| !v.is_null()) {
        None => None,
        Some(t) => read_tls(cx, t, &format!("{at}.tls")),
    };
    if protocol == ListenerProtocol::Https && tls.is_none() && cx.count() == before {
        cx.error(
            format!("{at}.tls"),
            "an HTTPS listener needs tls with certificateRefs",
        );
    }
    let allowed = item.get("allowedRoutes").unwrap_or(&Value::Null);
    let allowed_namespaces = read_allowed_namespaces(cx, allowed, &format!("{at}.allowedRoutes"));
    let mut allowed_kinds = vec![];
    let kinds_at = format!("{at}.allowedRoutes.kinds");
    for (k, k_at) in routing::list(cx, allowed.get("kinds").unwrap_or(&Value::Null), &kinds_at) {
        let group = k
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or(super::GROUP);
        match k.get("kind").and_then(Value::as_str) {
            Some(kind) if group == super::GROUP => allowed_kinds.push(kind.to_string()),
            Some(_) => {}
            None => cx.error(format!("{k_at}.kind"), "required field is missing"),
        }
    }
    (cx.count() == before).then_some(Listener {
        name,
        port,
        protocol,
        hostname,
        tls,
        allowed_namespaces,
        allowed_kinds,
    })
}

/// A Gateway API hostname: a DNS name, optionally `*.` first; no IP, no port.
pub(crate) fn check_hostname(cx: &mut Cx<'_, '_>, host: &str, field: &str) -> bool {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let ok = !bare.is_empty()
        && host.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && bare.parse::<std::net::IpAddr>().is_err();
    if !ok {
        cx.error(
            field,
            format!("{host:?} is not a hostname (lowercase DNS name, optionally starting with \"*.\"; no IP address, no port)"),
        );
    }
    ok
}

fn read_tls(cx: &mut Cx<'_, '_>, tls: &Value, at: &str) -> Option<ListenerTls> {
    let before = cx.count();
    let mode = match tls.get("mode").filter(|v| !v.is_null()) {
        None => Some(ListenerTlsMode::Terminate),
        Some(v) => routing::choice(cx, v, &format!("{at}.mode"), &["Terminate", "Passthrough"])
            .map(|m| {
                if m == "Terminate" {
                    ListenerTlsMode::Terminate
                } else {
                    ListenerTlsMode::Passthrough
                }
            }),
    };
    let mut certificate_refs = vec![];
    let refs_at = format!("{at}.certificateRefs");
    for (r, r_at) in routing::list(
        cx,
        tls.get("certificateRefs").unwrap_or(&Value::Null),
        &refs_at,
    ) {
        let Some(name) = r
            .get("name")
            .filter(|v| !v.is_null())
            .and_then(|v| routing::req_text(cx, v, &format!("{r_at}.name")))
        else {
            if r.get("name").is_none() {
                cx.error(format!("{r_at}.name"), "required field is missing");
            }
            continue;
        };
        certificate_refs.push(CertificateRef {
            group: r
                .get("group")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            kind: r
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("Secret")
                .to_string(),
            name,
            namespace: r
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    if mode == Some(ListenerTlsMode::Terminate)
        && certificate_refs.is_empty()
        && cx.count() == before
    {
        cx.error(
            refs_at,
            "tls mode Terminate needs at least one certificateRef (a Secret: the credential name)",
        );
    }
    if cx.count() != before {
        return None;
    }
    Some(ListenerTls {
        mode: mode?,
        certificate_refs,
    })
}

fn read_allowed_namespaces(cx: &mut Cx<'_, '_>, allowed: &Value, at: &str) -> AllowedNamespaces {
    let ns = allowed.get("namespaces").unwrap_or(&Value::Null);
    let from_at = format!("{at}.namespaces.from");
    match ns.get("from").filter(|v| !v.is_null()) {
        None => AllowedNamespaces::Same,
        Some(v) => {
            match routing::choice(cx, v, &from_at, &["Same", "All", "Selector"]).as_deref() {
                Some("All") => AllowedNamespaces::All,
                Some("Selector") => {
                    let sel_at = format!("{at}.namespaces.selector");
                    match ns.get("selector").filter(|v| !v.is_null()) {
                        None => {
                            cx.error(sel_at, "required when from is Selector");
                            AllowedNamespaces::Same
                        }
                        Some(sel) => AllowedNamespaces::Selector(label_selector(cx, sel, &sel_at)),
                    }
                }
                _ => AllowedNamespaces::Same,
            }
        }
    }
}

fn label_selector(cx: &mut Cx<'_, '_>, sel: &Value, at: &str) -> LabelSelector {
    let mut out = LabelSelector::default();
    let labels = sel.get("matchLabels").unwrap_or(&Value::Null);
    if !labels.is_null() {
        for (key, v, k_at) in routing::entries(cx, labels, &format!("{at}.matchLabels")) {
            if let Some(v) = routing::text(cx, v, &k_at) {
                out.match_labels.insert(key.to_string(), v);
            }
        }
    }
    let exprs_at = format!("{at}.matchExpressions");
    for (e, e_at) in routing::list(
        cx,
        sel.get("matchExpressions").unwrap_or(&Value::Null),
        &exprs_at,
    ) {
        let key = e
            .get("key")
            .and_then(|v| routing::req_text(cx, v, &format!("{e_at}.key")));
        let op = e.get("operator").and_then(|v| {
            routing::choice(
                cx,
                v,
                &format!("{e_at}.operator"),
                &["In", "NotIn", "Exists", "DoesNotExist"],
            )
        });
        let values = e
            .get("values")
            .map(|v| routing::strings(cx, v, &format!("{e_at}.values")))
            .unwrap_or_default();
        match (key, op) {
            (Some(key), Some(op)) => {
                if matches!(op.as_str(), "In" | "NotIn") && values.is_empty() {
                    cx.error(
                        format!("{e_at}.values"),
                        format!("operator {op} needs at least one value"),
                    );
                }
                out.match_expressions.push((key, op, values));
            }
            (None, _) if e.get("key").is_none() => {
                cx.error(format!("{e_at}.key"), "required field is missing")
            }
            (_, None) if e.get("operator").is_none() => {
                cx.error(format!("{e_at}.operator"), "required field is missing")
            }
            _ => {}
        }
    }
    out
}
