//! What a connection is and how it ended, as types: its direction, how it
//! was carried, and why it failed. Metrics, the access log and
//! `/stats/connections` read these; their text (`Display`, serde) is what
//! those outputs show, and no decision is taken on that text.
use std::fmt;

use mesh_hbone::Identity;
use serde::Serialize;

use crate::route::RefuseReason;

/// Which way a connection crosses this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Captured from a pod of this node (port 15001).
    Outbound,
    /// An HBONE tunnel from a peer (port 15008).
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection was carried, as `/stats/connections` and the access
/// log name it (`route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Carried {
    /// Straight to a destination outside the mesh.
    Passthrough,
    /// Same-node delivery: this agent is both ends (hops ② and ④ here).
    Local,
    /// Same-node delivery the kernel carries (the fast path, after this
    /// agent authorized the pair): reported from kernel events.
    Kernel,
    /// Over HBONE (outbound: to a peer agent or a waypoint; inbound: from one).
    Hbone,
    /// Nowhere to go (routing or the inbound checks refused it).
    Refused,
    /// Denied by an authorization policy.
    Denied,
}

impl Carried {
    pub fn as_str(self) -> &'static str {
        match self {
            Carried::Passthrough => "passthrough",
            Carried::Local => "local",
            Carried::Kernel => "kernel",
            Carried::Hbone => "hbone",
            Carried::Refused => "refused",
            Carried::Denied => "denied",
        }
    }
}

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection ended in error. The text is what the access log and
/// `/stats/connections` show as `error`.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The agent could not connect to the destination pod (outbound
    /// passthrough or local delivery, or inbound to its own pod).
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// A ServiceEntry endpoint's hostname gave no address.
    #[error("{0}")]
    Resolve(#[source] crate::dns::resolve::ResolveError),
    /// Routed to a hostname without a resolver (no DNS upstream known).
    #[error("no resolver for {host}: no DNS upstream configured")]
    NoResolver { host: String },
    /// No HBONE tunnel to the peer agent or waypoint.
    #[error("connect: {0}")]
    HboneConnect(#[source] mesh_hbone::ClientError),
    /// Routing found nowhere to send it.
    #[error("{0}")]
    NoRoute(RefuseReason),
    /// An HBONE tunnel for an address that is no mesh pod of this node.
    #[error("not a mesh pod of this node")]
    NotLocalPod,
    /// An HBONE tunnel asking for an identity the pod does not have.
    #[error("identity {0} is not the pod's")]
    WrongIdentity(Identity),
    /// An authorization policy denied it.
    #[error("denied by policy {policy}")]
    Denied { policy: String },
    /// The HBONE client went away before the tunnel was set up.
    #[error("cancelled before the tunnel was set up")]
    Cancelled,
    /// The HBONE stream closed before the relay started.
    #[error("tunnel closed before relaying")]
    TunnelClosed,
    /// Routed over HBONE without an HBONE client (no control plane).
    #[error("no HBONE client: no control plane configured")]
    NoHboneClient,
    /// The relay ended with an error after the connection was set up.
    #[error("{0}")]
    Relay(#[source] std::io::Error),
}

impl ConnError {
    /// Envoy's (and Istio's) `response_flags` for a connection that ended
    /// with this error: `DENY` denied by policy, `NR` no route, `UF`
    /// upstream connect failure, `DF` DNS resolution failure (Envoy's flag
    /// for it), `-` for errors after the connection was set up.
    pub fn response_flag(&self) -> &'static str {
        match self {
            ConnError::Denied { .. } => "DENY",
            ConnError::Resolve(_) | ConnError::NoResolver { .. } => "DF",
            ConnError::NoRoute(_) | ConnError::NotLocalPod | ConnError::WrongIdentity(_) => "NR",
            ConnError::Connect(_) | ConnError::HboneConnect(_) | ConnError::NoHboneClient => "UF",
            ConnError::Cancelled | ConnError::TunnelClosed | ConnError::Relay(_) => "-",
        }
    }

    /// Counted in `upstream_connect_failed` (a name that resolves to
    /// nothing is an upstream the agent could not connect to).
    pub fn is_upstream_connect_failure(&self) -> bool {
        matches!(
            self,
            ConnError::Connect(_)
                | ConnError::HboneConnect(_)
                | ConnError::NoHboneClient
                | ConnError::Resolve(_)
                | ConnError::NoResolver { .. }
        )
    }
}
