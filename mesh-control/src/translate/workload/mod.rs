//! `MeshState` → Istio workload-discovery resources, in the shapes istiod
//! produces and ztunnel expects.
//!
//! - One `istio.workload.Address` per pod, named by its uid. Mesh pods get
//!   `tunnel_protocol: HBONE`, other pods are plain endpoints (`NONE`). As
//!   istiod, no `network_gateway` within one network: a client tunnels to
//!   the pod's own listener, `<pod IP>:15008` (we serve one network, so it
//!   is never set; see docs/contracts/workload-xds.md).
//! - One `Address` per service, named `<namespace>/<hostname>`, with the
//!   `waypoint` it is attached to (first waypoint pod's IP, port 15008).
//!   Waypoint pods are published like other pods, as plain (`mesh:
//!   false`) workloads with their identity.
//! - ServiceEntry hosts are services too, and their endpoints workloads
//!   without identity ([`external`]).
//! - PeerAuthentication, as istiod converts it for ambient: no per-policy
//!   resource; instead one static DENY policy `<root>/istio_converted_static_strict`
//!   (scope `WORKLOAD_SELECTOR`, "deny connections without a peer
//!   principal"), published whenever any PeerAuthentication exists, and
//!   listed in `authorization_policies` of each mesh workload whose
//!   *effective* mode is STRICT. The effective mode follows Istio's
//!   precedence: a workload-selector policy in the pod's namespace, else the
//!   namespace-wide one, else the mesh-wide one (root namespace, no
//!   selector); when several tie, the first in `MeshState` order wins
//!   (Istio: the oldest). PERMISSIVE and DISABLE produce nothing (ambient
//!   ignores DISABLE: the tunnel is always mTLS).
//! - AuthorizationPolicy: one `Authorization` per publishable policy,
//!   converted by [`super::authorization`]; selector and `targetRefs`
//!   policies are listed in `authorization_policies` of the workloads they
//!   select, beside the static STRICT one (sorted, without duplicates).
use std::{collections::BTreeMap, net::IpAddr};

use mesh_xds::proto::{
    istio_security::{
        string_match::MatchType, Action, Authorization, Clause, Match, Rule, Scope, StringMatch,
    },
    istio_workload::{
        address, gateway_address, Address, GatewayAddress, NetworkAddress, Port, PortList, Service,
        TunnelProtocol, Workload, WorkloadStatus, WorkloadType,
    },
};

use super::authorization::WorkloadPolicies;
use crate::model::{service_entry::Resolution, MeshState, MtlsMode, PeerAuthentication};

pub mod external;

/// Name istiod gives its converted STRICT policy ('_' cannot occur in
/// Kubernetes names, so it never collides with a user policy).
pub const STATIC_STRICT_POLICY: &str = "istio_converted_static_strict";
/// The agents' HBONE port, as the proto's `u32`.
pub const HBONE_PORT: u32 = mesh_common::HBONE_PORT as u32;

/// Settings of the conversion that are not part of the mesh state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Istio's root namespace: PeerAuthentications here without a selector
    /// are mesh-wide.
    pub root_namespace: String,
    /// `Workload.cluster_id`.
    pub cluster_id: String,
    /// `Workload.network` and the network of every address; empty is the
    /// default network.
    pub network: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            root_namespace: "istio-system".into(),
            cluster_id: "Kubernetes".into(),
            network: String::new(),
        }
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ports(map: &BTreeMap<u16, u16>) -> Vec<Port> {
    map.iter()
        .map(|(s, t)| Port {
            service_port: u32::from(*s),
            target_port: u32::from(*t),
            ..Default::default()
        })
        .collect()
}

/// Resource name of a service: `<namespace>/<hostname>`.
pub fn service_resource_name(svc: &crate::model::Service) -> String {
    format!("{}/{}", svc.namespace, svc.hostname)
}

/// Resource name of an authorization policy: `<namespace>/<name>`.
pub fn authorization_resource_name(a: &Authorization) -> String {
    format!("{}/{}", a.namespace, a.name)
}

/// The first label present, as Istio picks canonical names.
fn first_label<'a>(labels: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| labels.get(*k)).map(String::as_str)
}

/// The owning workload's name and kind: a Deployment's pod is named
/// `<deployment>-<pod-template-hash>-<suffix>`; anything else is a bare pod.
fn workload_name(w: &crate::model::Workload) -> (String, WorkloadType) {
    if let Some(hash) = w.labels.get("pod-template-hash") {
        if let Some((prefix, _suffix)) = w.name.rsplit_once('-') {
            if let Some(deployment) = prefix.strip_suffix(&format!("-{hash}")) {
                return (deployment.to_string(), WorkloadType::Deployment);
            }
        }
    }
    (w.name.clone(), WorkloadType::Pod)
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The PeerAuthentication that decides the mTLS mode of `w`, if any.
pub fn effective_peer_authentication<'a>(
    policies: &'a [PeerAuthentication],
    w: &crate::model::Workload,
    root_namespace: &str,
) -> Option<&'a PeerAuthentication> {
    let in_ns =
        |p: &&PeerAuthentication| p.namespace == w.namespace && p.namespace != root_namespace;
    let workload = policies
        .iter()
        .filter(in_ns)
        .find(|p| !p.selector.is_empty() && selects(&p.selector, &w.labels));
    let namespace = || {
        policies
            .iter()
            .filter(in_ns)
            .find(|p| p.selector.is_empty())
    };
    let mesh = || {
        policies
            .iter()
            .find(|p| p.namespace == root_namespace && p.selector.is_empty())
    };
    workload.or_else(namespace).or_else(mesh)
}

/// True when `w` only accepts mTLS (HBONE) connections.
pub fn is_strict(state: &MeshState, w: &crate::model::Workload, opts: &ConvertOptions) -> bool {
    effective_peer_authentication(&state.peer_authentications, w, &opts.root_namespace)
        .is_some_and(|p| p.mode == MtlsMode::Strict)
}

/// The Address resource of one pod.
pub fn workload_address(
    state: &MeshState,
    w: &crate::model::Workload,
    opts: &ConvertOptions,
) -> Workload {
    let policies = WorkloadPolicies::new(state, &opts.root_namespace);
    workload_address_with(state, w, opts, &policies)
}

/// [`workload_address`] with the policy index built once for all pods.
fn workload_address_with(
    state: &MeshState,
    w: &crate::model::Workload,
    opts: &ConvertOptions,
    policies: &WorkloadPolicies<'_>,
) -> Workload {
    let (workload_name, workload_type) = workload_name(w);
    let canonical_name = first_label(
        &w.labels,
        &[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ],
    )
    .map_or_else(|| workload_name.clone(), str::to_string);
    let canonical_revision = first_label(
        &w.labels,
        &[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ],
    )
    .unwrap_or("latest")
    .to_string();
    // Istio sets `network_gateway` only for a workload on another network
    // (its east-west gateway); every workload here shares `opts.network`.
    let network_gateway = None;
    let mut authorization_policies = policies.of(w);
    if w.mesh && is_strict(state, w, opts) {
        authorization_policies.push(format!("{}/{STATIC_STRICT_POLICY}", opts.root_namespace));
    }
    authorization_policies.sort();
    authorization_policies.dedup();
    Workload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        addresses: w.ips.iter().map(ip_bytes).collect(),
        network: opts.network.clone(),
        tunnel_protocol: if w.mesh {
            TunnelProtocol::Hbone
        } else {
            TunnelProtocol::None
        } as i32,
        trust_domain: state.trust_domain.clone(),
        service_account: w.service_account.clone(),
        waypoint: None,
        network_gateway,
        node: w.node.clone(),
        canonical_name,
        canonical_revision,
        workload_type: workload_type as i32,
        workload_name,
        services: w
            .services
            .iter()
            .map(|(name, map)| (name.clone(), PortList { ports: ports(map) }))
            .collect(),
        authorization_policies,
        status: WorkloadStatus::Healthy as i32,
        cluster_id: opts.cluster_id.clone(),
        probe_ports: w.probe_ports.iter().map(|p| u32::from(*p)).collect(),
        hostname: String::new(),
        ..Default::default()
    }
}

/// The `waypoint` of a service attached to an existing waypoint with an
/// address: its first pod's IP, HBONE port 15008
/// (docs/contracts/waypoint-xds.md, "Declaring and attaching a waypoint").
pub fn service_waypoint(
    state: &MeshState,
    svc: &crate::model::Service,
    opts: &ConvertOptions,
) -> Option<GatewayAddress> {
    let waypoint = state.service_waypoint(svc)?;
    let Some((_, ip)) = state.waypoint_address(waypoint) else {
        tracing::debug!(service = %svc.hostname, waypoint = %waypoint.reference(), "waypoint has no pod with an address yet");
        return None;
    };
    Some(GatewayAddress {
        destination: Some(gateway_address::Destination::Address(NetworkAddress {
            network: opts.network.clone(),
            address: ip_bytes(&ip),
            ..Default::default()
        })),
        hbone_mtls_port: HBONE_PORT,
    })
}

/// The Address resource of one service.
pub fn service_address(
    state: &MeshState,
    svc: &crate::model::Service,
    opts: &ConvertOptions,
) -> Service {
    Service {
        name: svc.name.clone(),
        namespace: svc.namespace.clone(),
        hostname: svc.hostname.clone(),
        addresses: svc
            .vips
            .iter()
            .map(|ip| NetworkAddress {
                network: opts.network.clone(),
                address: ip_bytes(ip),
                ..Default::default()
            })
            .collect(),
        ports: ports(&svc.ports),
        subject_alt_names: svc
            .external
            .as_ref()
            .map(|e| e.subject_alt_names.clone())
            .unwrap_or_default(),
        waypoint: service_waypoint(state, svc, opts),
        export_to: svc
            .external
            .as_ref()
            .map(|e| external::export_to(e, &svc.namespace))
            .unwrap_or_default(),
        passthrough: svc
            .external
            .as_ref()
            .is_some_and(|e| e.resolution == Resolution::None),
        ..Default::default()
    }
}

/// Every Address resource of the mesh: (resource name, resource).
pub fn addresses(state: &MeshState, opts: &ConvertOptions) -> Vec<(String, Address)> {
    let policies = WorkloadPolicies::new(state, &opts.root_namespace);
    let workloads = state.workloads.values().map(|w| {
        let addr = address::Type::Workload(workload_address_with(state, w, opts, &policies));
        (w.uid.clone(), Address { r#type: Some(addr) })
    });
    let services = state.services.values().map(|s| {
        let addr = address::Type::Service(service_address(state, s, opts));
        (service_resource_name(s), Address { r#type: Some(addr) })
    });
    let endpoints = external::endpoint_workloads(state, opts)
        .into_iter()
        .map(|(uid, w)| {
            let addr = address::Type::Workload(w);
            (uid, Address { r#type: Some(addr) })
        });
    workloads.chain(endpoints).chain(services).collect()
}

/// istiod's static STRICT policy: deny any connection without a peer
/// identity (i.e. not over mTLS), for the workloads that reference it.
pub fn static_strict_policy(root_namespace: &str) -> Authorization {
    let presence = StringMatch {
        match_type: Some(MatchType::Presence(mesh_xds::proto::wkt::Empty {})),
    };
    Authorization {
        name: STATIC_STRICT_POLICY.into(),
        namespace: root_namespace.into(),
        scope: Scope::WorkloadSelector as i32,
        action: Action::Deny as i32,
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![Match {
                    not_principals: vec![presence],
                    ..Default::default()
                }],
            }],
        }],
        dry_run: false,
        ..Default::default()
    }
}

/// Every Authorization resource of the mesh: (resource name, resource),
/// sorted by name. Translation findings are not logged here (this runs
/// once per listener and change); the source logs them once per load.
pub fn authorizations(state: &MeshState, opts: &ConvertOptions) -> Vec<(String, Authorization)> {
    let mut out = super::authorization::translate(state, &opts.root_namespace).authorizations;
    if !state.peer_authentications.is_empty() {
        let strict = static_strict_policy(&opts.root_namespace);
        out.push((authorization_resource_name(&strict), strict));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests;
