//! Who talked to whom, in Istio's telemetry vocabulary: the labels of the
//! `istio_tcp_*` metrics and the identity fields of the access log.
//!
//! Values follow Istio: an unknown value is the string `unknown`; workloads
//! are named by their owner (`workload_name`, e.g. the Deployment), app and
//! version are the canonical service name and revision. Labels never carry
//! IP addresses or ports (cardinality).
use std::{net::IpAddr, sync::Arc};

use mesh_hbone::Identity;
use prometheus_client::encoding::EncodeLabelSet;

use crate::{
    route::{PassthroughReason, Resolved, Route},
    state::{
        outcome::ConnError,
        view::{MeshView, ServiceName, WorkloadInfo},
    },
};

pub const UNKNOWN: &str = "unknown";

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub workload: String,
    pub namespace: String,
    /// SPIFFE id, or `unknown`.
    pub principal: String,
    /// Canonical service (`service.istio.io/canonical-name`, else `app`).
    pub app: String,
    /// Canonical revision (`service.istio.io/canonical-revision`, else
    /// `version`).
    pub version: String,
    /// The workload's cluster (`cluster_id`, [`DEFAULT_CLUSTER`] when the
    /// control plane names none), `unknown` when no workload is known.
    pub cluster: String,
}

/// Istio's default cluster name, reported for a workload whose cluster the
/// control plane does not name.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";

fn or_unknown(value: &str) -> String {
    if value.is_empty() {
        UNKNOWN.to_string()
    } else {
        value.to_string()
    }
}

impl Peer {
    pub fn unknown() -> Self {
        Self {
            workload: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
            principal: UNKNOWN.into(),
            app: UNKNOWN.into(),
            version: UNKNOWN.into(),
            cluster: UNKNOWN.into(),
        }
    }

    /// A workload known from xDS. Only mesh workloads have a principal: a
    /// pod outside the mesh never presents its service account's identity.
    pub fn from_workload(w: &WorkloadInfo) -> Self {
        Self {
            workload: or_unknown(w.workload_label()),
            namespace: or_unknown(&w.namespace),
            principal: if w.mesh {
                w.identity.to_string()
            } else {
                UNKNOWN.into()
            },
            app: or_unknown(&w.canonical_name),
            version: or_unknown(&w.canonical_revision),
            cluster: if w.cluster_id.is_empty() {
                DEFAULT_CLUSTER.into()
            } else {
                w.cluster_id.clone()
            },
        }
    }

    /// Only an identity is known (an mTLS peer we cannot tie to a workload).
    pub fn from_identity(id: &Identity) -> Self {
        Self {
            namespace: or_unknown(id.namespace()),
            principal: id.to_string(),
            ..Self::unknown()
        }
    }
}

/// Everything the labels of one connection are computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLabels {
    pub source: Peer,
    pub destination: Peer,
    /// The Service the client dialled (outbound) or most likely dialled
    /// (inbound), if any.
    pub service: Option<Arc<ServiceName>>,
    /// Both ends are in the mesh and mTLS-authenticated: carried over HBONE,
    /// or delivered on this node between two mesh workloads (Istio's
    /// `connection_security_policy="mutual_tls"`).
    pub mutual_tls: bool,
}

impl ConnLabels {
    pub fn unknown() -> Self {
        Self {
            source: Peer::unknown(),
            destination: Peer::unknown(),
            service: None,
            mutual_tls: false,
        }
    }

    /// A connection captured from a pod of this node, routed as `resolved`
    /// on `view` (empty when no control plane feeds the agent: every label
    /// is then `unknown`).
    pub fn outbound(view: &MeshView, src: IpAddr, resolved: &Resolved) -> Self {
        let source_workload = view.workload_by_ip(src);
        let source = source_workload.map_or_else(Peer::unknown, Peer::from_workload);
        let destination_workload = resolved
            .endpoint()
            .and_then(|dst| view.workload_by_ip(dst.ip()));
        let destination = match &resolved.route {
            // A ServiceEntry destination outside the mesh: as Istio, no
            // workload is named (the service is).
            Route::Resolve { .. }
            | Route::Passthrough {
                why: PassthroughReason::ServiceEntry | PassthroughReason::ExternalEndpoint,
                ..
            } => Peer::unknown(),
            _ => destination_workload.map_or_else(Peer::unknown, Peer::from_workload),
        };
        let in_mesh = |w: Option<&WorkloadInfo>| w.is_some_and(|w| w.mesh);
        let mutual_tls = match resolved.route {
            Route::Hbone { .. } => true,
            // Same-node delivery authorizes both ends by identity, as an
            // HBONE hop would: Istio reports it as mTLS when both are mesh
            // workloads.
            Route::Local { .. } => in_mesh(source_workload) && in_mesh(destination_workload),
            Route::Passthrough { .. } | Route::Resolve { .. } | Route::Refuse(_) => false,
        };
        Self {
            source,
            destination,
            service: resolved.service.clone(),
            mutual_tls,
        }
    }

    /// An HBONE tunnel from `peer` (the verified mTLS identity) to `target`
    /// (a pod of this node, if the authority names one) on `port`.
    ///
    /// The source pod is the first of `candidates` where the mesh knows a
    /// workload with exactly the peer's identity: the `forwarded: for=`
    /// address the client sent (an agent speaking for its pod), then the
    /// tunnel's own TCP source (a waypoint or gateway dialling from its
    /// pod). An address is only a claim, so without an identity match the
    /// source is described by the identity alone.
    pub fn inbound(
        view: &MeshView,
        peer: &Identity,
        candidates: &[IpAddr],
        target: Option<&WorkloadInfo>,
        port: u16,
    ) -> Self {
        let source = candidates
            .iter()
            .filter_map(|ip| view.workload_by_ip(*ip))
            .find(|w| w.identity == *peer)
            .map_or_else(|| Peer::from_identity(peer), Peer::from_workload);
        Self {
            source,
            destination: target.map_or_else(Peer::unknown, Peer::from_workload),
            service: target.and_then(|t| view.guess_service(&t.uid, port)),
            mutual_tls: true,
        }
    }
}

/// Who records a metric sample, as Istio's `reporter` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    Source,
    Destination,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// Istio's `response_flags` for a finished connection, from how it ended:
/// `DENY` denied by policy, `NR` no route (refused by routing or the
/// inbound checks), `UF` upstream connect failure, `-` otherwise
/// ([`ConnError::response_flag`]).
pub fn response_flags(error: Option<&ConnError>) -> &'static str {
    error.map_or("-", ConnError::response_flag)
}

/// Label values reach the text exposition unescaped (prometheus-client
/// does not escape them), so characters that would break a line are
/// replaced; Kubernetes names never contain them anyway.
fn clean(value: &str) -> String {
    value.replace(['"', '\\', '\n'], "_")
}

/// Istio's `request_protocol` of every connection the agent reports (it
/// sees TCP only).
pub const REQUEST_PROTOCOL: &str = "tcp";

/// The label set of Istio's TCP metrics, names exactly as Istio's (and in
/// the waypoint's order): `*_app`/`*_version` and
/// `*_canonical_service`/`*_canonical_revision` carry the same values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TcpLabels {
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

impl TcpLabels {
    pub fn new(labels: &ConnLabels, reporter: Reporter, response_flags: &str) -> Self {
        let (s, d) = (&labels.source, &labels.destination);
        let svc = |f: fn(&ServiceName) -> &str| {
            labels
                .service
                .as_deref()
                .map_or_else(|| UNKNOWN.to_string(), |s| clean(&or_unknown(f(s))))
        };
        Self {
            reporter: reporter.as_str().into(),
            source_workload: clean(&s.workload),
            source_canonical_service: clean(&s.app),
            source_canonical_revision: clean(&s.version),
            source_workload_namespace: clean(&s.namespace),
            source_principal: clean(&s.principal),
            source_app: clean(&s.app),
            source_version: clean(&s.version),
            source_cluster: clean(&s.cluster),
            destination_service: svc(|s| &s.hostname),
            destination_service_namespace: svc(|s| &s.namespace),
            destination_service_name: svc(|s| &s.name),
            destination_workload: clean(&d.workload),
            destination_workload_namespace: clean(&d.namespace),
            destination_principal: clean(&d.principal),
            destination_app: clean(&d.app),
            destination_version: clean(&d.version),
            destination_canonical_service: clean(&d.app),
            destination_canonical_revision: clean(&d.version),
            destination_cluster: clean(&d.cluster),
            request_protocol: REQUEST_PROTOCOL.into(),
            response_flags: response_flags.into(),
            connection_security_policy: if labels.mutual_tls {
                "mutual_tls"
            } else {
                "none"
            }
            .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        route::resolve,
        state::fixtures::{view, workload},
    };

    fn id(sa: &str) -> Identity {
        format!("spiffe://cluster.local/ns/default/sa/{sa}")
            .parse()
            .unwrap()
    }

    #[test]
    fn outbound_via_vip_names_both_workloads_and_the_service() {
        let v = view();
        let src: IpAddr = "10.244.1.2".parse().unwrap();
        // Round robin: b (local, plaintext) then c (remote, HBONE).
        let first = resolve(&v, src, "10.96.0.10:80".parse().unwrap());
        let second = resolve(&v, src, "10.96.0.10:80".parse().unwrap());
        let (local, remote) = match first.route {
            Route::Hbone { .. } => (second, first),
            _ => (first, second),
        };
        let remote = ConnLabels::outbound(&v, src, &remote);
        let t = TcpLabels::new(&remote, Reporter::Source, "-");
        assert_eq!(t.source_workload, "a");
        assert_eq!(t.source_principal, id("a").to_string());
        assert_eq!(
            (t.source_app.as_str(), t.source_version.as_str()),
            ("a", "v1")
        );
        assert_eq!(t.destination_workload, "c");
        assert_eq!(t.destination_workload_namespace, "default");
        assert_eq!(t.destination_principal, id("c").to_string());
        assert_eq!(t.destination_service, "svc.default.svc.cluster.local");
        assert_eq!(t.destination_service_name, "svc");
        assert_eq!(t.destination_service_namespace, "default");
        assert_eq!(t.connection_security_policy, "mutual_tls");
        let local = TcpLabels::new(
            &ConnLabels::outbound(&v, src, &local),
            Reporter::Source,
            "-",
        );
        assert_eq!(local.destination_workload, "b");
        // Both ends are mesh workloads of this node.
        assert_eq!(local.connection_security_policy, "mutual_tls");
    }

    /// The labels Istio's dashboards group by, for the three ways a
    /// connection leaves a pod.
    #[test]
    fn istio_standard_labels_for_local_hbone_and_passthrough() {
        let v = view();
        let src: IpAddr = "10.244.1.2".parse().unwrap();
        let labels = |dst: &str| {
            let r = resolve(&v, src, dst.parse().unwrap());
            let route = r.route.clone();
            (
                route,
                TcpLabels::new(&ConnLabels::outbound(&v, src, &r), Reporter::Source, "-"),
            )
        };
        // Same node, a → b (both mesh).
        let (route, local) = labels("10.244.1.3:8080");
        assert!(matches!(route, Route::Local { .. }), "{route:?}");
        // HBONE, a → c on node n2.
        let (route, hbone) = labels("10.244.2.2:8080");
        assert!(matches!(route, Route::Hbone { .. }), "{route:?}");
        for (t, dst) in [(&local, "b"), (&hbone, "c")] {
            assert_eq!(t.source_canonical_service, "a");
            assert_eq!(t.source_canonical_revision, "v1");
            assert_eq!(t.destination_canonical_service, dst);
            assert_eq!(t.destination_canonical_revision, "v1");
            assert_eq!(t.source_cluster, "Kubernetes");
            assert_eq!(t.destination_cluster, "Kubernetes");
            assert_eq!(t.request_protocol, "tcp");
            assert_eq!(t.connection_security_policy, "mutual_tls");
            assert_eq!(t.response_flags, "-");
        }
        // Passthrough to an address nothing knows.
        let (route, outside) = labels("192.0.2.1:443");
        assert!(matches!(route, Route::Passthrough { .. }), "{route:?}");
        assert_eq!(outside.source_canonical_service, "a");
        assert_eq!(outside.source_cluster, "Kubernetes");
        assert_eq!(outside.destination_canonical_service, UNKNOWN);
        assert_eq!(outside.destination_canonical_revision, UNKNOWN);
        assert_eq!(outside.destination_cluster, UNKNOWN);
        assert_eq!(outside.request_protocol, "tcp");
        assert_eq!(outside.connection_security_policy, "none");
    }

    #[test]
    fn local_delivery_to_a_pod_outside_the_mesh_is_not_mutual_tls() {
        // b: a pod of this node outside the mesh, its cluster unnamed.
        let mut b = workload("b", "10.244.1.3", "n1", false);
        b.cluster_id = String::new();
        let v = MeshView::new(
            "n1",
            vec![workload("a", "10.244.1.2", "n1", true), b],
            vec![],
        );
        let src: IpAddr = "10.244.1.2".parse().unwrap();
        let r = resolve(&v, src, "10.244.1.3:8080".parse().unwrap());
        let t = TcpLabels::new(&ConnLabels::outbound(&v, src, &r), Reporter::Source, "-");
        assert_eq!(t.destination_workload, "b");
        assert_eq!(t.connection_security_policy, "none");
        // Istio's default cluster name when the control plane names none.
        assert_eq!(t.destination_cluster, DEFAULT_CLUSTER);
    }

    #[test]
    fn inbound_hbone_labels_are_mutual_tls_with_clusters() {
        let v = view();
        let target = v.workload_by_ip("10.244.1.3".parse().unwrap());
        let c_ip: &[IpAddr] = &["10.244.2.2".parse().unwrap()];
        let conn = ConnLabels::inbound(&v, &id("c"), c_ip, target, 8080);
        let t = TcpLabels::new(&conn, Reporter::Destination, "-");
        assert_eq!(t.reporter, "destination");
        assert_eq!(t.source_canonical_service, "c");
        assert_eq!(t.destination_canonical_service, "b");
        assert_eq!(
            (t.source_cluster.as_str(), t.destination_cluster.as_str()),
            ("Kubernetes", "Kubernetes")
        );
        assert_eq!(t.connection_security_policy, "mutual_tls");
        // Known only by identity: no cluster known.
        let bare = ConnLabels::inbound(&v, &id("a"), c_ip, target, 8080);
        let t = TcpLabels::new(&bare, Reporter::Destination, "-");
        assert_eq!(t.source_cluster, UNKNOWN);
        assert_eq!(t.source_canonical_service, UNKNOWN);
    }

    #[test]
    fn unknown_sides_and_direct_destinations_say_unknown() {
        let v = view();
        // Not a VIP, not a known pod: passthrough with nothing known.
        let r = resolve(
            &v,
            "10.244.1.2".parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        );
        let t = TcpLabels::new(
            &ConnLabels::outbound(&v, "10.244.1.99".parse().unwrap(), &r),
            Reporter::Source,
            "UF",
        );
        for value in [
            &t.source_workload,
            &t.source_principal,
            &t.destination_workload,
            &t.destination_principal,
            &t.destination_service,
            &t.destination_service_name,
            &t.destination_app,
        ] {
            assert_eq!(value, UNKNOWN);
        }
        assert_eq!(t.response_flags, "UF");
        // A pod outside the mesh has a name but no principal.
        let r = resolve(
            &v,
            "10.244.1.2".parse().unwrap(),
            "10.244.2.3:80".parse().unwrap(),
        );
        let t = TcpLabels::new(
            &ConnLabels::outbound(&v, "10.244.1.2".parse().unwrap(), &r),
            Reporter::Source,
            "-",
        );
        assert_eq!(t.destination_workload, "legacy");
        assert_eq!(t.destination_principal, UNKNOWN);
        // No control plane at all.
        let none = TcpLabels::new(&ConnLabels::unknown(), Reporter::Source, "-");
        assert_eq!(none.source_workload_namespace, UNKNOWN);
    }

    #[test]
    fn egress_to_a_service_entry_names_the_host_and_no_workload() {
        let v = crate::state::fixtures::entries_view();
        let src: IpAddr = "10.244.1.2".parse().unwrap();
        for (vip, host) in [
            ("240.240.0.1:80", "www.googleapis.com"),
            ("240.240.0.2:80", "api.static.test"),
            ("240.240.0.3:5432", "db.example.com"),
        ] {
            let r = resolve(&v, src, vip.parse().unwrap());
            let t = TcpLabels::new(&ConnLabels::outbound(&v, src, &r), Reporter::Source, "-");
            assert_eq!(t.destination_service, host);
            assert_eq!(t.destination_service_name, host, "Istio names the host");
            assert_eq!(t.destination_service_namespace, "default");
            assert_eq!(t.source_workload, "a");
            for value in [
                &t.destination_workload,
                &t.destination_workload_namespace,
                &t.destination_principal,
                &t.destination_app,
                &t.destination_version,
            ] {
                assert_eq!(value, UNKNOWN, "{host}");
            }
            assert_eq!(t.connection_security_policy, "none");
        }
        // From a namespace it is not exported to: no service at all.
        let other: IpAddr = "10.244.1.9".parse().unwrap();
        let r = resolve(&v, other, "240.240.0.1:80".parse().unwrap());
        let t = TcpLabels::new(&ConnLabels::outbound(&v, other, &r), Reporter::Source, "-");
        assert_eq!(t.destination_service, UNKNOWN);
    }

    #[test]
    fn inbound_believes_forwarded_for_only_when_identities_match() {
        let v = view();
        let target = v.workload_by_ip("10.244.1.3".parse().unwrap());
        let c_ip: &[IpAddr] = &["10.244.2.2".parse().unwrap()];
        let honest = ConnLabels::inbound(&v, &id("c"), c_ip, target, 8080);
        assert_eq!(honest.source.workload, "c");
        assert_eq!(honest.source.app, "c");
        assert_eq!(honest.destination.workload, "b");
        assert_eq!(honest.service.as_ref().unwrap().name, "svc");
        // Peer "a" claims to forward for c's address: only the identity counts.
        let liar = ConnLabels::inbound(&v, &id("a"), c_ip, target, 8080);
        assert_eq!(liar.source.workload, UNKNOWN);
        assert_eq!(liar.source.namespace, "default");
        assert_eq!(liar.source.principal, id("a").to_string());
        // A waypoint speaks for itself: its own pod address (the tunnel's
        // TCP source) names it, after a forwarded address that does not.
        let waypoint_ip: IpAddr = "10.244.2.2".parse().unwrap();
        let other_pod: IpAddr = "10.244.1.2".parse().unwrap();
        let via = ConnLabels::inbound(&v, &id("c"), &[other_pod, waypoint_ip], target, 8080);
        assert_eq!(via.source.workload, "c");
        // No forwarded header.
        let bare = ConnLabels::inbound(&v, &id("c"), &[], target, 9999);
        assert_eq!(bare.source.workload, UNKNOWN);
        assert!(bare.service.is_none());
        assert!(bare.mutual_tls);
    }

    #[test]
    fn response_flags_follow_istio() {
        use crate::route::RefuseReason;
        let io = |kind| std::io::Error::new(kind, "refused");
        let denied = ConnError::Denied {
            policy: "ns/p".into(),
        };
        assert_eq!(response_flags(Some(&denied)), "DENY");
        let no_route = ConnError::NoRoute(RefuseReason::NoEndpoints {
            service: "ns/svc".into(),
        });
        assert_eq!(response_flags(Some(&no_route)), "NR");
        assert_eq!(response_flags(Some(&ConnError::NotLocalPod)), "NR");
        let connect = ConnError::Connect(io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(response_flags(Some(&connect)), "UF");
        let reset = ConnError::Relay(io(std::io::ErrorKind::ConnectionReset));
        assert_eq!(response_flags(Some(&reset)), "-");
        assert_eq!(response_flags(None), "-");
    }

    #[test]
    fn flags_do_not_depend_on_the_error_text() {
        // A relay error whose text starts like a connect failure's.
        let relay = ConnError::Relay(std::io::Error::other("connect: not really"));
        assert_eq!(relay.to_string(), "connect: not really");
        assert_eq!(response_flags(Some(&relay)), "-");
        assert!(!relay.is_upstream_connect_failure());
    }
}
