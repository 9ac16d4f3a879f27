//! `security.istio.io` AuthorizationPolicy as the control plane holds it
//! after validation: every field Istio defines, typed, still in Istio's
//! vocabulary (strings as written, ports as numbers, CIDRs parsed). What
//! the agents can enforce, and how, is decided later by
//! [`crate::translate::authorization`]; keeping the whole policy here lets
//! that layer say precisely what it dropped (L7 attributes, CUSTOM) instead
//! of the source silently losing it.
use std::{collections::BTreeMap, net::IpAddr};

/// A CIDR block (`10.0.0.0/8`, `fd00::/64`); a bare address is a host
/// block (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl std::fmt::Display for IpBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// `spec.action`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
    /// Logged by agents, never enforced.
    Audit,
    /// Delegated to an external authorizer named by `spec.provider.name`.
    Custom {
        provider: String,
    },
}

impl AuthzAction {
    /// Istio's spelling (`ALLOW`, `DENY`, `AUDIT`, `CUSTOM`).
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
            AuthzAction::Custom { .. } => "CUSTOM",
        }
    }
}

/// One of `spec.targetRef` / `spec.targetRefs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// `""` for core kinds (Service), `gateway.networking.k8s.io`, …
    pub group: String,
    pub kind: String,
    pub name: String,
    /// Where it was written (`spec.targetRef`, `spec.targetRefs[1]`), for
    /// findings.
    pub field: String,
}

/// `rules[].from[].source`: values of one field are OR-ed, fields AND-ed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    /// Istio ≥ 1.23: `<namespace>/<name>` or `<name>` (policy namespace).
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub ip_blocks: Vec<IpBlock>,
    pub not_ip_blocks: Vec<IpBlock>,
    /// L7 (JWT) attributes, kept to be reported.
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    /// L7 (X-Forwarded-For) attributes, kept to be reported.
    pub remote_ip_blocks: Vec<IpBlock>,
    pub not_remote_ip_blocks: Vec<IpBlock>,
    /// Fields of `source` this version of the mesh does not know (a newer
    /// Istio's), by name; treated as L7: never matched at L4.
    pub unknown: Vec<String>,
}

/// `rules[].to[].operation`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operation {
    pub ports: Vec<u16>,
    pub not_ports: Vec<u16>,
    /// L7 attributes, kept to be reported.
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
    /// Unknown fields of `operation`, treated as L7.
    pub unknown: Vec<String>,
}

/// A `when` key this mesh can evaluate at L4, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Values {
    SourceIp(Vec<IpBlock>),
    SourceNamespace(Vec<String>),
    SourcePrincipal(Vec<String>),
    DestinationIp(Vec<IpBlock>),
    DestinationPort(Vec<u16>),
}

/// One `rules[].when[]` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `values` and `notValues` of an L4 key (either may be empty, not
    /// both); both are the same [`L4Values`] variant.
    L4 {
        key: String,
        values: L4Values,
        not_values: L4Values,
    },
    /// A valid Istio key only a proxy that sees requests can evaluate
    /// (`request.*`, `remote.ip`, `connection.sni`, `experimental.*`, …),
    /// with its `values` and `notValues` as written (a waypoint evaluates
    /// them).
    L7 {
        key: String,
        values: Vec<String>,
        not_values: Vec<String>,
    },
}

/// One entry of `spec.rules`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthzRule {
    /// `None`: the rule has no `from` (any source).
    pub from: Option<Vec<Source>>,
    /// `None`: the rule has no `to` (any operation).
    pub to: Option<Vec<Operation>>,
    pub when: Vec<Condition>,
}

/// A validated AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    pub name: String,
    pub namespace: String,
    /// File it was read from (for findings).
    pub file: String,
    /// `spec.selector.matchLabels`; `None` when there is no selector
    /// (an empty `matchLabels` selects every pod, as in Kubernetes).
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.targetRef` and `spec.targetRefs`, in that order.
    pub target_refs: Vec<TargetRef>,
    pub action: AuthzAction,
    /// Empty (absent or `[]`): ALLOW allows nothing, DENY denies nothing.
    pub rules: Vec<AuthzRule>,
    /// Annotation `istio.io/dry-run`.
    pub dry_run: bool,
}

impl AuthorizationPolicy {
    /// `AuthorizationPolicy <namespace>/<name>`, as problems and findings
    /// name it.
    pub fn resource(&self) -> String {
        format!("AuthorizationPolicy {}/{}", self.namespace, self.name)
    }
}

/// The principal regex of a `namespaces` / `notNamespaces` entry (Istio's
/// `*` wildcards allowed): what the waypoint matches peer identities with,
/// and what the source checks against the regex budget.
pub fn namespace_principal_regex(ns: &str) -> String {
    let ns_re = ns
        .split('*')
        .map(::regex::escape)
        .collect::<Vec<_>>()
        .join("[^/]*");
    format!("spiffe://[^/]+/ns/{ns_re}/sa/.*")
}
