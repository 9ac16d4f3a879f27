//! The Kubernetes and Istio objects the control plane reads, parsed from
//! YAML documents into plain structs; [`super::build`] turns them into a
//! `MeshState`. Every other accepted Istio / Gateway API kind is kept raw.
use std::{collections::BTreeMap, net::IpAddr};

use serde_yaml::Value;

use super::{
    documents::Document,
    error::Problem,
    fields::{self, lookup, Reporter},
    RawResource,
};
use crate::model::{AuthorizationPolicy, DestinationRule, MtlsMode, VirtualService};

/// Where a resource came from, for problems found when resources are
/// checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub file: String,
    /// `Pod default/productpage-v1`.
    pub resource: String,
    /// `document 3`.
    pub position: String,
}

impl Origin {
    pub fn problem(&self, field: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: self.file.clone(),
            resource: self.resource.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// `Pod default/a (pods.yaml, document 2)`, to point at the other half
    /// of a conflict.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.resource, self.location())
    }

    /// `pods.yaml, document 2`.
    pub fn location(&self) -> String {
        format!("{}, {}", self.file, self.position)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NamespaceObj {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct PodObj {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// `status.phase`.
    pub phase: super::pod_owner::PodPhase,
    /// `metadata.creationTimestamp` as written (RFC 3339, UTC).
    pub created: Option<String>,
    /// Ports the kubelet's probes connect to (sorted, no duplicates).
    pub probe_ports: Vec<u16>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePort {
    /// `name`: how EndpointSlice ports refer to it.
    pub name: Option<String>,
    pub port: u16,
    pub target_port: u16,
    pub tcp: bool,
    /// `appProtocol`, else `name`.
    pub protocol_hint: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceObj {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Absent or empty: selects no pod.
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    pub vips: Vec<IpAddr>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct NodeObj {
    pub name: String,
    pub address: IpAddr,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct PeerAuthObj {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    /// `None`: UNSET (inherit from the parent scope).
    pub mode: Option<MtlsMode>,
    pub origin: Origin,
}

/// Everything read from a directory, before cross-checks.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    pub namespaces: Vec<NamespaceObj>,
    pub pods: Vec<PodObj>,
    pub services: Vec<ServiceObj>,
    pub nodes: Vec<NodeObj>,
    pub peer_authentications: Vec<PeerAuthObj>,
    /// Also kept in `raw`, as written.
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// Also kept in `raw`, as written.
    pub virtual_services: Vec<VirtualService>,
    /// Also kept in `raw`, as written.
    pub destination_rules: Vec<DestinationRule>,
    /// Also kept in `raw`, as written.
    pub service_entries: Vec<crate::model::ServiceEntry>,
    /// Gateway API Gateways of class `istio-waypoint` (also kept raw).
    pub waypoints: Vec<super::gateway::WaypointObj>,
    /// `networking.istio.io` Gateways (also kept raw).
    pub ingress_gateways: Vec<crate::model::IngressGateway>,
    /// Gateway API Gateways of class `istio`, HTTPRoutes, ReferenceGrants
    /// (also kept raw).
    pub gateway_api: super::gateway_api::GatewayApiObjects,
    pub raw: Vec<RawResource>,
    /// Where each of `raw` came from (same order).
    pub raw_origins: Vec<Origin>,
}

/// API groups whose kinds are kept raw for later translation, with the
/// kinds we know of (anything else in these groups is warned about).
const RAW_KINDS: &[(&str, &[&str])] = &[
    (
        "networking.istio.io",
        &[
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "ServiceEntry",
            "Sidecar",
            "WorkloadEntry",
            "WorkloadGroup",
            "EnvoyFilter",
            "ProxyConfig",
        ],
    ),
    (
        "security.istio.io",
        &["AuthorizationPolicy", "RequestAuthentication"],
    ),
    ("telemetry.istio.io", &["Telemetry"]),
    // Kept raw; a Service without a selector takes its endpoints' pods
    // from them (super::endpoint_slices).
    ("discovery.k8s.io", &["EndpointSlice"]),
    ("extensions.istio.io", &["WasmPlugin"]),
    (
        "gateway.networking.k8s.io",
        &[
            "Gateway",
            "GatewayClass",
            "HTTPRoute",
            "GRPCRoute",
            "TCPRoute",
            "TLSRoute",
            "UDPRoute",
            "ReferenceGrant",
            "BackendTLSPolicy",
        ],
    ),
];

/// Cluster-scoped kinds: no namespace.
const CLUSTER_SCOPED: &[&str] = &["Namespace", "Node", "GatewayClass"];

/// Sorts one document into `objects`.
pub(crate) fn read(
    doc: &Document,
    objects: &mut Objects,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) {
    let mut rep = Reporter {
        file: &doc.file,
        resource: doc.position(),
        problems,
    };
    let value = &doc.value;
    if !value.is_mapping() {
        rep.error(
            "",
            format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                fields::type_name(value)
            ),
        );
        return;
    }
    let before = rep.count();
    let api_version = fields::req_str(&mut rep, value, "apiVersion");
    let kind = fields::req_str(&mut rep, value, "kind");
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return;
    };
    let (group, version) = match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version.as_str()),
    };
    let known = matches!(
        (group, version, kind.as_str()),
        ("", "v1", "Namespace" | "Pod" | "Service" | "Node")
    ) || (group == "security.istio.io" && kind == "PeerAuthentication")
        || RAW_KINDS
            .iter()
            .any(|(g, kinds)| *g == group && kinds.contains(&kind.as_str()));
    if !known {
        let name = lookup(value, "metadata.name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        warnings.push(format!(
            "{}: {}: {api_version} {kind} {name} is not a kind the mesh reads; skipped",
            doc.file,
            doc.position()
        ));
        return;
    }
    let cluster_scoped = CLUSTER_SCOPED.contains(&kind.as_str());
    // Name the resource as precisely as possible, so every problem says
    // which one it is.
    rep.resource = format!("{kind} in {}", doc.position());
    let name = fields::req_str(&mut rep, value, "metadata.name");
    let namespace = if cluster_scoped {
        String::new()
    } else {
        fields::opt_str(&mut rep, value, "metadata.namespace").unwrap_or_else(|| "default".into())
    };
    let Some(name) = name else { return };
    rep.resource = if cluster_scoped {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    };
    let name_ok = fields::check_name(&mut rep, "metadata.name", &name, kind == "Namespace");
    let ns_ok =
        cluster_scoped || fields::check_name(&mut rep, "metadata.namespace", &namespace, true);
    if !(name_ok && ns_ok) {
        return;
    }
    let origin = Origin {
        file: doc.file.clone(),
        resource: rep.resource.clone(),
        position: doc.position(),
    };
    // Every kind: a `spec` or `status` that is there is a mapping.
    for part in ["spec", "status"] {
        if let Some(v) = lookup(value, part) {
            if !v.is_mapping() {
                rep.error(
                    part,
                    format!("expected a mapping, found {}", fields::type_name(v)),
                );
                return;
            }
        }
    }
    match (group, version, kind.as_str()) {
        ("", "v1", "Namespace") => {
            let labels = fields::string_map(&mut rep, value, "metadata.labels");
            objects.namespaces.push(NamespaceObj {
                name,
                labels,
                origin,
            });
        }
        ("", "v1", "Pod") => {
            if let Some(pod) = pod(&mut rep, value, name, namespace, origin, warnings) {
                objects.pods.push(pod);
            }
        }
        ("", "v1", "Service") => {
            if let Some(service) = service(&mut rep, value, name, namespace, origin) {
                objects.services.push(service);
            }
        }
        ("", "v1", "Node") => {
            if let Some(node) = node(&mut rep, value, name, origin) {
                objects.nodes.push(node);
            }
        }
        ("security.istio.io", _, "PeerAuthentication") => {
            if !matches!(version, "v1" | "v1beta1") {
                rep.error(
                    "apiVersion",
                    format!("{api_version} is not a PeerAuthentication version (use security.istio.io/v1 or v1beta1)"),
                );
                return;
            }
            if let Some(pa) =
                peer_authentication(&mut rep, value, name, namespace, origin, warnings)
            {
                objects.peer_authentications.push(pa);
            }
        }
        _ => {
            if group == "security.istio.io" && kind == "AuthorizationPolicy" {
                let policy =
                    super::authz::authorization_policy(&mut rep, value, version, &name, &namespace);
                objects.authorization_policies.extend(policy);
            }
            if group == "networking.istio.io"
                && matches!(kind.as_str(), "VirtualService" | "DestinationRule")
            {
                let mut cx = super::routing::Cx {
                    rep: &mut rep,
                    warnings,
                };
                if kind == "VirtualService" {
                    let vs = super::virtual_service::virtual_service(
                        &mut cx, value, version, &name, &namespace,
                    );
                    objects.virtual_services.extend(vs);
                } else {
                    let dr = super::destination_rule::destination_rule(
                        &mut cx, value, version, &name, &namespace,
                    );
                    objects.destination_rules.extend(dr);
                }
            }
            if group == "networking.istio.io" && kind == "ServiceEntry" {
                let mut cx = super::routing::Cx {
                    rep: &mut rep,
                    warnings,
                };
                let entry =
                    super::service_entry::service_entry(&mut cx, value, version, &name, &namespace);
                objects.service_entries.extend(entry);
            }
            if group == "networking.istio.io" && kind == "Gateway" {
                let gateway = super::ingress_gateway::ingress_gateway(
                    &mut rep, value, version, &name, &namespace,
                );
                objects.ingress_gateways.extend(gateway);
            }
            if group == "gateway.networking.k8s.io" && kind == "Gateway" {
                let waypoint =
                    super::gateway::gateway(&mut rep, value, version, &name, &namespace, &origin);
                objects.waypoints.extend(waypoint);
            }
            if group == "gateway.networking.k8s.io" && rep.count() == before {
                super::gateway_api::read(
                    &mut rep,
                    warnings,
                    value,
                    &kind,
                    version,
                    &name,
                    &namespace,
                    &origin,
                    &mut objects.gateway_api,
                );
            }
            if rep.count() == before {
                objects.raw_origins.push(origin);
                objects.raw.push(RawResource {
                    api_version,
                    kind,
                    namespace,
                    name,
                    file: doc.file.clone(),
                    value: value.clone(),
                });
            }
        }
    }
}

fn pod(
    rep: &mut Reporter<'_>,
    value: &Value,
    name: String,
    namespace: String,
    origin: Origin,
    warnings: &mut Vec<String>,
) -> Option<PodObj> {
    let before = rep.count();
    let labels = fields::string_map(rep, value, "metadata.labels");
    let service_account = fields::opt_str(rep, value, "spec.serviceAccountName")
        .or_else(|| fields::opt_str(rep, value, "spec.serviceAccount"))
        .unwrap_or_else(|| "default".into());
    fields::check_name(rep, "spec.serviceAccountName", &service_account, false);
    let node = fields::opt_str(rep, value, "spec.nodeName").unwrap_or_default();
    let host_network = match lookup(value, "spec.hostNetwork") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            rep.error(
                "spec.hostNetwork",
                format!("expected true or false, found {}", fields::show(other)),
            );
            false
        }
    };
    let mut ips = vec![];
    if let Some(ip) = lookup(value, "status.podIP") {
        ips.extend(fields::ip(rep, "status.podIP", ip));
    }
    for (i, entry) in fields::seq(rep, value, "status.podIPs").iter().enumerate() {
        let field = format!("status.podIPs[{i}].ip");
        match lookup(entry, "ip") {
            Some(ip) => {
                if let Some(ip) = fields::ip(rep, &field, ip) {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
            None => rep.error(field, "required field is missing"),
        }
    }
    if ips.len() > 2 || (ips.len() == 2 && ips[0].is_ipv4() == ips[1].is_ipv4()) {
        rep.error(
            "status.podIPs",
            "a pod has at most one address per family (status.podIP must be the first of status.podIPs)",
        );
    }
    let phase =
        super::pod_owner::PodPhase::parse(fields::opt_str(rep, value, "status.phase").as_deref());
    let created = fields::opt_str(rep, value, "metadata.creationTimestamp");
    let probe_ports = super::pod_probes::probe_ports(rep, value, &origin, warnings);
    if rep.count() != before {
        return None;
    }
    // A pod without an address yet (scheduled, its sandbox being set up) is
    // a workload too, published with no addresses: the node agent decides
    // its enrolment from it while the CNI ADD that gives it the address is
    // still running (docs/contracts/workload-xds.md, `addresses`).
    Some(PodObj {
        name,
        namespace,
        labels,
        service_account,
        node,
        ips,
        host_network,
        phase,
        created,
        probe_ports,
        origin,
    })
}

fn service(
    rep: &mut Reporter<'_>,
    value: &Value,
    name: String,
    namespace: String,
    origin: Origin,
) -> Option<ServiceObj> {
    let before = rep.count();
    let labels = fields::string_map(rep, value, "metadata.labels");
    let selector = fields::string_map(rep, value, "spec.selector");
    let mut ports: Vec<ServicePort> = vec![];
    for (i, entry) in fields::seq(rep, value, "spec.ports").iter().enumerate() {
        let field = |f: &str| format!("spec.ports[{i}].{f}");
        let Some(port_value) = lookup(entry, "port") else {
            rep.error(field("port"), "required field is missing");
            continue;
        };
        let Some(port) = fields::port(rep, &field("port"), port_value) else {
            continue;
        };
        let target_port = match lookup(entry, "targetPort") {
            None => Some(port),
            Some(Value::String(s)) => {
                rep.error(
                    field("targetPort"),
                    format!("named target port {s:?} is not supported yet; use the container port number"),
                );
                None
            }
            Some(other) => fields::port(rep, &field("targetPort"), other),
        };
        let protocol = fields::opt_str(rep, entry, "protocol").unwrap_or_else(|| "TCP".into());
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            rep.error(
                field("protocol"),
                format!("{protocol:?} is not TCP, UDP or SCTP"),
            );
            continue;
        }
        let port_name = fields::opt_str(rep, entry, "name");
        if let Some(name) = &port_name {
            fields::check_name(rep, &field("name"), name, true);
        }
        let app_protocol = fields::opt_str(rep, entry, "appProtocol");
        let Some(target_port) = target_port else {
            continue;
        };
        let tcp = protocol == "TCP";
        if ports.iter().any(|p| p.port == port && p.tcp == tcp) {
            rep.error(
                field("port"),
                format!("port {port}/{protocol} is listed twice"),
            );
            continue;
        }
        ports.push(ServicePort {
            name: port_name.clone(),
            port,
            target_port,
            tcp,
            protocol_hint: app_protocol.or(port_name),
        });
    }
    let mut vips = vec![];
    let mut add_vip = |rep: &mut Reporter<'_>, field: &str, value: &Value| {
        // "None": headless; "": not allocated (no VIP either way).
        if matches!(value.as_str(), Some("None" | "")) {
            return;
        }
        if let Some(ip) = fields::ip(rep, field, value) {
            if !vips.contains(&ip) {
                vips.push(ip);
            }
        }
    };
    if let Some(ip) = lookup(value, "spec.clusterIP") {
        add_vip(rep, "spec.clusterIP", ip);
    }
    for (i, ip) in fields::seq(rep, value, "spec.clusterIPs")
        .iter()
        .enumerate()
    {
        add_vip(rep, &format!("spec.clusterIPs[{i}]"), ip);
    }
    (rep.count() == before).then_some(ServiceObj {
        name,
        namespace,
        labels,
        selector,
        ports,
        vips,
        origin,
    })
}

fn node(rep: &mut Reporter<'_>, value: &Value, name: String, origin: Origin) -> Option<NodeObj> {
    let mut address = None;
    let mut seen_internal = false;
    for (i, entry) in fields::seq(rep, value, "status.addresses")
        .iter()
        .enumerate()
    {
        if lookup(entry, "type").and_then(Value::as_str) != Some("InternalIP") {
            continue;
        }
        seen_internal = true;
        let field = format!("status.addresses[{i}].address");
        match lookup(entry, "address") {
            None => rep.error(field, "required field is missing"),
            Some(value) => {
                let ip = fields::ip(rep, &field, value);
                address = address.or(ip);
            }
        }
    }
    if !seen_internal {
        rep.error(
            "status.addresses",
            "no InternalIP address (the node's agent is reached on it for HBONE)",
        );
    }
    Some(NodeObj {
        name,
        address: address?,
        origin,
    })
}

fn peer_authentication(
    rep: &mut Reporter<'_>,
    value: &Value,
    name: String,
    namespace: String,
    origin: Origin,
    warnings: &mut Vec<String>,
) -> Option<PeerAuthObj> {
    let before = rep.count();
    let selector = fields::string_map(rep, value, "spec.selector.matchLabels");
    let mode = match fields::opt_str(rep, value, "spec.mtls.mode").as_deref() {
        None | Some("UNSET") => None,
        Some("STRICT") => Some(MtlsMode::Strict),
        Some("PERMISSIVE") => Some(MtlsMode::Permissive),
        Some("DISABLE") => Some(MtlsMode::Disable),
        Some(other) => {
            rep.error(
                "spec.mtls.mode",
                format!("{other:?} is not an mTLS mode (STRICT, PERMISSIVE, DISABLE or UNSET)"),
            );
            None
        }
    };
    if let Some(levels) = lookup(value, "spec.portLevelMtls") {
        // Checked as Istio's API types it (map<uint32, MutualTLS>), then
        // ignored with a warning.
        match levels {
            Value::Mapping(map) => {
                for key in map.keys() {
                    let port = match key {
                        Value::Number(n) => n.as_u64().filter(|p| (1..=65535).contains(p)),
                        Value::String(s) => {
                            s.parse::<u64>().ok().filter(|p| (1..=65535).contains(p))
                        }
                        _ => None,
                    };
                    if port.is_none() {
                        rep.error(
                            "spec.portLevelMtls",
                            format!("key {} is not a port number 1-65535", fields::show(key)),
                        );
                    }
                }
            }
            other => rep.error(
                "spec.portLevelMtls",
                format!(
                    "expected a mapping of port → mode, found {}",
                    fields::type_name(other)
                ),
            ),
        }
        warnings.push(format!(
            "{}: {}: spec.portLevelMtls is not supported yet and is ignored",
            origin.file, origin.resource
        ));
    }
    (rep.count() == before).then_some(PeerAuthObj {
        name,
        namespace,
        selector,
        mode,
        origin,
    })
}
