//! The label set of Istio's request metrics as the waypoint reports them
//! (`reporter="waypoint"`; a gateway reports `reporter="source"`, as
//! Istio's gateways do), with the agent's vocabulary: unknown values are
//! `unknown`, workloads are named by their owner, app/version are the
//! canonical service and revision, principals only for mesh workloads.
use prometheus_client::encoding::EncodeLabelSet;

use super::record::RequestRecord;
use crate::upstream::{Directory, WorkloadEntry};

pub const UNKNOWN: &str = "unknown";
/// Istio's cluster id when none is configured.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";

/// The `reporter` label: which proxy role reports the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reporter {
    #[default]
    Waypoint,
    /// An ingress gateway reports as the request's source.
    Source,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Waypoint => "waypoint",
            Reporter::Source => "source",
        }
    }
}

/// Label values reach the text exposition unescaped: characters that would
/// break a line are replaced (Kubernetes names never contain them).
pub(crate) fn clean(value: &str) -> String {
    if value.is_empty() {
        UNKNOWN.to_string()
    } else {
        value.replace(['"', '\\', '\n'], "_")
    }
}

/// One side of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub workload: String,
    pub namespace: String,
    pub principal: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub cluster: String,
}

impl Side {
    pub fn unknown() -> Self {
        Side {
            workload: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
            principal: UNKNOWN.into(),
            canonical_service: UNKNOWN.into(),
            canonical_revision: UNKNOWN.into(),
            cluster: UNKNOWN.into(),
        }
    }

    pub fn from_workload(w: &WorkloadEntry) -> Self {
        Side {
            workload: clean(w.workload_label()),
            namespace: clean(&w.namespace),
            principal: match (&w.identity, w.mesh) {
                (Some(id), true) => clean(&id.to_string()),
                _ => UNKNOWN.into(),
            },
            canonical_service: clean(&w.canonical_name),
            canonical_revision: clean(&w.canonical_revision),
            // Istio's default cluster id, as the agent reports it.
            cluster: if w.cluster_id.is_empty() {
                DEFAULT_CLUSTER.to_string()
            } else {
                clean(&w.cluster_id)
            },
        }
    }
}

/// The source of a request: the pod at the source address when it is the
/// workload the mTLS peer's identity says (the address is only the peer's
/// claim), else what the identity alone tells.
pub fn source(r: &RequestRecord, dir: &Directory) -> Side {
    let by_ip = r.source.ip.and_then(|ip| dir.workload_by_ip(ip));
    match (&r.source.principal, by_ip) {
        (Some(p), Some(w)) if w.identity.as_ref().is_some_and(|id| id.to_string() == *p) => {
            Side::from_workload(w)
        }
        (Some(p), _) => {
            let namespace = p
                .parse::<mesh_hbone::Identity>()
                .map_or_else(|_| UNKNOWN.to_string(), |id| clean(id.namespace()));
            Side {
                principal: clean(p),
                namespace,
                ..Side::unknown()
            }
        }
        // Plain listener: the workload is known by address, not proven.
        (None, Some(w)) => Side {
            principal: UNKNOWN.into(),
            ..Side::from_workload(w)
        },
        (None, None) => Side::unknown(),
    }
}

/// `destination_service`, `_name` and `_namespace` of a service host.
pub fn destination_service(service: Option<&str>, dir: &Directory) -> (String, String, String) {
    match service {
        None => (
            UNKNOWN.to_string(),
            UNKNOWN.to_string(),
            UNKNOWN.to_string(),
        ),
        // What the cluster's metadata says (a ServiceEntry host is
        // named by the host), else the Address view, else the FQDN.
        Some(host) => match (dir.cluster_service(host), dir.service_by_hostname(host)) {
            (Some(s), _) => (clean(host), clean(&s.name), clean(&s.namespace)),
            (None, Some(e)) => (clean(host), clean(&e.name), clean(&e.namespace)),
            // `<name>.<ns>.svc…`: the FQDN tells both.
            (None, None) => {
                let mut parts = host.split('.');
                let name = parts.next().unwrap_or_default();
                let ns = parts.next().unwrap_or_default();
                (clean(host), clean(name), clean(ns))
            }
        },
    }
}

/// The labels Istio's request (`istio_request*`) and TCP (`istio_tcp_*`)
/// metrics share: the reporter, both sides, the destination service,
/// the protocol, Envoy's response flags and the security policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PeerLabels {
    pub reporter: String,
    pub source_workload: String,
    pub source_canonical_service: String,
    pub source_canonical_revision: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub source_app: String,
    pub source_version: String,
    pub source_cluster: String,
    pub destination_service: String,
    pub destination_service_namespace: String,
    pub destination_service_name: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_app: String,
    pub destination_version: String,
    pub destination_canonical_service: String,
    pub destination_canonical_revision: String,
    pub destination_cluster: String,
    pub request_protocol: String,
    pub response_flags: String,
    pub connection_security_policy: String,
}

/// What [`PeerLabels`] are made of.
pub struct Peers {
    pub reporter: Reporter,
    pub source: Side,
    pub destination: Side,
    /// `destination_service`, `_name`, `_namespace`
    /// ([`destination_service`]).
    pub service: (String, String, String),
    pub protocol: String,
    /// Envoy's response flags; empty: none (`-`).
    pub flags: String,
    pub mutual_tls: bool,
}

impl PeerLabels {
    pub fn new(p: Peers) -> Self {
        let (s, d) = (p.source, p.destination);
        let (svc_host, svc_name, svc_ns) = p.service;
        PeerLabels {
            reporter: p.reporter.as_str().into(),
            source_workload: s.workload,
            source_app: s.canonical_service.clone(),
            source_version: s.canonical_revision.clone(),
            source_canonical_service: s.canonical_service,
            source_canonical_revision: s.canonical_revision,
            source_workload_namespace: s.namespace,
            source_principal: s.principal,
            source_cluster: s.cluster,
            destination_service: svc_host,
            destination_service_namespace: svc_ns,
            destination_service_name: svc_name,
            destination_workload: d.workload,
            destination_workload_namespace: d.namespace,
            destination_principal: d.principal,
            destination_app: d.canonical_service.clone(),
            destination_version: d.canonical_revision.clone(),
            destination_canonical_service: d.canonical_service,
            destination_canonical_revision: d.canonical_revision,
            destination_cluster: d.cluster,
            request_protocol: p.protocol,
            response_flags: if p.flags.is_empty() {
                "-".into()
            } else {
                clean(&p.flags)
            },
            connection_security_policy: if p.mutual_tls { "mutual_tls" } else { "none" }.into(),
        }
    }
}

/// Istio's `istio_request*` labels: the response's and the shared ones
/// (the derive takes a flattened set only as the last field).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub response_code: String,
    pub grpc_response_status: String,
    #[prometheus(flatten)]
    pub peer: PeerLabels,
}

impl std::ops::Deref for RequestLabels {
    type Target = PeerLabels;

    fn deref(&self) -> &PeerLabels {
        &self.peer
    }
}

impl RequestLabels {
    /// The labels a waypoint reports.
    pub fn new(r: &RequestRecord, dir: &Directory) -> Self {
        Self::reported_by(Reporter::Waypoint, r, dir, Side::unknown)
    }

    /// The labels `reporter` reports. `own` is the reporting proxy's
    /// workload: a gateway (`Reporter::Source`) is the source of what it
    /// sends into the mesh, as Istio's gateways report it (the client
    /// outside stays in the access log); a waypoint reports the client.
    pub fn reported_by(
        reporter: Reporter,
        r: &RequestRecord,
        dir: &Directory,
        own: impl FnOnce() -> Side,
    ) -> Self {
        let s = match reporter {
            Reporter::Waypoint => source(r, dir),
            Reporter::Source => own(),
        };
        let d = r
            .workload
            .as_deref()
            .and_then(|uid| dir.workload_by_uid(uid))
            .map_or_else(Side::unknown, |w| Side::from_workload(w));
        RequestLabels {
            peer: PeerLabels::new(Peers {
                reporter,
                source: s,
                destination: d,
                service: destination_service(r.service.as_deref(), dir),
                protocol: r.protocol.to_string(),
                flags: r.flags.clone(),
                mutual_tls: r.source.principal.is_some(),
            }),
            response_code: r.status.to_string(),
            grpc_response_status: r.grpc_status.map(|g| g.to_string()).unwrap_or_default(),
        }
    }
}
