//! Parsed objects → [`MeshState`]: duplicate and cross-reference checks,
//! mesh enrolment, service selection and PeerAuthentication scoping.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use super::{
    error::Problem,
    objects::{Objects, Origin, PeerAuthObj},
    pod_owner::{Claim, PodOwners},
    SourceConfig,
};
use crate::model::{
    waypoint::{GATEWAY_NAME_LABEL, USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL},
    MeshState, MtlsMode, Node, PeerAuthentication, Service, Waypoint, WaypointRef, Workload,
};

/// The namespace / pod label that enrols (`ambient`) or opts out (`none`).
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// Builds the state; problems and warnings are appended.
pub(crate) fn build(
    objects: &Objects,
    config: &SourceConfig,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> MeshState {
    let mut state = MeshState {
        trust_domain: config.trust_domain.clone(),
        cluster_domain: config.cluster_domain.clone(),
        ..MeshState::default()
    };

    let mut namespaces: BTreeMap<&str, &BTreeMap<String, String>> = BTreeMap::new();
    let mut seen = Seen::default();
    for ns in &objects.namespaces {
        if seen.first("Namespace", &ns.name, &ns.origin, problems) {
            namespaces.insert(&ns.name, &ns.labels);
        }
    }

    // Duplicates are caught with the raw resources below.
    for wp in &objects.waypoints {
        let waypoint = Waypoint {
            name: wp.name.clone(),
            namespace: wp.namespace.clone(),
            file: wp.origin.file.clone(),
            pods: vec![],
        };
        state
            .waypoints
            .entry(waypoint.reference().key())
            .or_insert(waypoint);
    }

    for node in &objects.nodes {
        if seen.first("Node", &node.name, &node.origin, problems) {
            state.nodes.insert(
                node.name.clone(),
                Node {
                    name: node.name.clone(),
                    address: node.address,
                },
            );
        }
    }

    // Every address names one thing: a pod or a service VIP.
    let mut addresses: HashMap<IpAddr, &Origin> = HashMap::new();

    let mut services = vec![];
    for svc in &objects.services {
        if !seen.first(
            "Service",
            &format!("{}/{}", svc.namespace, svc.name),
            &svc.origin,
            problems,
        ) {
            continue;
        }
        for (i, vip) in svc.vips.iter().enumerate() {
            if let Some(other) = addresses.get(vip) {
                problems.push(svc.origin.problem(
                    if i == 0 {
                        "spec.clusterIP"
                    } else {
                        "spec.clusterIPs"
                    },
                    format!("{vip} is already used by {}", other.describe()),
                ));
            } else {
                addresses.insert(*vip, &svc.origin);
            }
        }
        let hostname = format!(
            "{}.{}.svc.{}",
            svc.name, svc.namespace, config.cluster_domain
        );
        let key = format!("{}/{hostname}", svc.namespace);
        let ns_labels = namespaces.get(svc.namespace.as_str()).copied();
        // A gateway's own Service (selecting its pods) never goes through a
        // waypoint: the waypoint would send its traffic to itself.
        let waypoint = if svc.selector.contains_key(GATEWAY_NAME_LABEL) {
            None
        } else {
            use_waypoint(&svc.labels, ns_labels, &svc.namespace)
        };
        if let Some(r) = &waypoint {
            if !state.waypoints.contains_key(&r.key()) {
                warnings.push(format!(
                    "{}: {}: uses waypoint {r} ({USE_WAYPOINT_LABEL}), which no Gateway of class istio-waypoint defines: its traffic bypasses L7 processing until it exists",
                    svc.origin.file, svc.origin.resource
                ));
            }
        }
        let tcp_ports = || svc.ports.iter().filter(|p| p.tcp);
        state.services.insert(
            key.clone(),
            Service {
                name: svc.name.clone(),
                namespace: svc.namespace.clone(),
                hostname,
                vips: svc.vips.clone(),
                ports: tcp_ports().map(|p| (p.port, p.target_port)).collect(),
                port_protocols: tcp_ports()
                    .filter_map(|p| p.protocol_hint.clone().map(|h| (p.port, h)))
                    .collect(),
                labels: svc.labels.clone(),
                waypoint,
                external: None,
            },
        );
        services.push((key, svc));
    }

    let owners = PodOwners::new(&objects.pods);
    for pod in &objects.pods {
        if !seen.first(
            "Pod",
            &format!("{}/{}", pod.namespace, pod.name),
            &pod.origin,
            problems,
        ) {
            continue;
        }
        match owners.claim(pod) {
            Claim::Owner => {}
            Claim::Terminal => continue,
            Claim::Displaced { ip, by } => {
                warnings.push(format!(
                    "{}: Pod {}/{}: left out: {ip} is also claimed by Pod {}/{} ({}), which is preferred (Running, then newest creationTimestamp)",
                    pod.origin.file, pod.namespace, pod.name, by.namespace, by.name, by.origin.location()
                ));
                continue;
            }
        }
        if !pod.host_network {
            for (i, ip) in pod.ips.iter().enumerate() {
                if let Some(other) = addresses.get(ip) {
                    problems.push(pod.origin.problem(
                        if i == 0 {
                            "status.podIP"
                        } else {
                            "status.podIPs"
                        },
                        format!("{ip} is already used by {}", other.describe()),
                    ));
                } else {
                    addresses.insert(*ip, &pod.origin);
                }
            }
        }
        let ns_labels = namespaces.get(pod.namespace.as_str());
        let ns_ambient = ns_labels
            .and_then(|l| l.get(DATAPLANE_MODE_LABEL))
            .map(String::as_str)
            == Some("ambient");
        let opted_out = pod.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) == Some("none");
        let uid = format!("Kubernetes//Pod/{}/{}", pod.namespace, pod.name);
        // A waypoint's own pods are proxies, never captured (Istio labels
        // them istio.io/dataplane-mode=none).
        let waypoint = pod.labels.get(GATEWAY_NAME_LABEL).and_then(|name| {
            state
                .waypoints
                .get_mut(&format!("{}/{name}", pod.namespace))
        });
        let is_waypoint = waypoint.is_some();
        if let Some(waypoint) = waypoint {
            waypoint.pods.push(uid.clone());
            waypoint.pods.sort();
        }
        // Host-network pods share the node's stack; they cannot be captured.
        let mesh = ns_ambient && !opted_out && !pod.host_network && !is_waypoint;
        // An unscheduled pod (no node, no address yet) is published as is;
        // once it has an address it needs its node's agent.
        if mesh && !pod.ips.is_empty() {
            if pod.node.is_empty() {
                problems.push(pod.origin.problem(
                    "spec.nodeName",
                    "required for a mesh workload (its node's agent terminates HBONE for it)",
                ));
            } else if !state.nodes.contains_key(&pod.node) {
                problems.push(pod.origin.problem(
                    "spec.nodeName",
                    format!(
                        "node {:?} is not defined by any Node in the directory",
                        pod.node
                    ),
                ));
            }
        }
        let selected = services
            .iter()
            .filter(|(_, svc)| {
                svc.namespace == pod.namespace
                    && !svc.selector.is_empty()
                    && svc
                        .selector
                        .iter()
                        .all(|(k, v)| pod.labels.get(k) == Some(v))
            })
            .map(|(key, svc)| {
                let ports = svc
                    .ports
                    .iter()
                    .filter(|p| p.tcp)
                    .map(|p| (p.port, p.target_port));
                (key.clone(), ports.collect())
            })
            .collect();
        state.workloads.insert(
            uid.clone(),
            Workload {
                uid,
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                service_account: pod.service_account.clone(),
                ips: pod.ips.clone(),
                node: pod.node.clone(),
                labels: pod.labels.clone(),
                mesh,
                services: selected,
                probe_ports: pod.probe_ports.clone(),
            },
        );
    }

    super::endpoint_slices::attach(&objects.raw, &services, &mut state);

    for (raw, origin) in objects.raw.iter().zip(&objects.raw_origins) {
        let group = raw.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let key = format!("{group}/{}/{}", raw.namespace, raw.name);
        // Kinds of different groups may share a name (Istio's and Gateway
        // API's Gateway); versions of one group may not.
        seen.first(&format!("{group}/{}", raw.kind), &key, origin, problems);
    }

    let mut policies = vec![];
    for pa in &objects.peer_authentications {
        if seen.first(
            "PeerAuthentication",
            &format!("{}/{}", pa.namespace, pa.name),
            &pa.origin,
            problems,
        ) {
            policies.push(pa);
        }
    }
    state.peer_authentications = resolve_peer_authentications(&policies, config, warnings);
    // Duplicates were caught with the raw resources above (the load fails).
    state.authorization_policies = objects.authorization_policies.clone();
    state.virtual_services = objects.virtual_services.clone();
    state.ingress_gateways = objects.ingress_gateways.clone();
    state.destination_rules = objects.destination_rules.clone();
    state.service_entries = objects.service_entries.clone();
    let entry_waypoint = |labels: &BTreeMap<String, String>, namespace: &str| {
        use_waypoint(labels, namespaces.get(namespace).copied(), namespace)
    };
    super::service_entry::services::add(&mut state, &entry_waypoint, problems);
    state
}

/// The waypoint named by `istio.io/use-waypoint` on the Service, else on
/// its Namespace (`none` on the Service opts out of the namespace's), in
/// `istio.io/use-waypoint-namespace` of the same object or the service's
/// namespace.
fn use_waypoint(
    svc_labels: &BTreeMap<String, String>,
    ns_labels: Option<&BTreeMap<String, String>>,
    namespace: &str,
) -> Option<WaypointRef> {
    let from = |labels: &BTreeMap<String, String>| {
        labels.get(USE_WAYPOINT_LABEL).map(|name| {
            let ns = labels
                .get(USE_WAYPOINT_NAMESPACE_LABEL)
                .map_or(namespace, String::as_str);
            (name.as_str() != "none").then(|| WaypointRef {
                namespace: ns.to_string(),
                name: name.clone(),
            })
        })
    };
    match from(svc_labels) {
        Some(on_service) => on_service,
        None => ns_labels.and_then(from).flatten(),
    }
}

/// Resolves UNSET (inherit) to the parent scope's mode, as Istio does:
/// workload selector → namespace-wide → mesh-wide (root namespace, no
/// selector) → PERMISSIVE. When two policies share a scope, the first (in
/// file order) wins, as the oldest does in Istio; the others are warned about.
fn resolve_peer_authentications(
    policies: &[&PeerAuthObj],
    config: &SourceConfig,
    warnings: &mut Vec<String>,
) -> Vec<PeerAuthentication> {
    let mut namespace_wide: BTreeMap<&str, &PeerAuthObj> = BTreeMap::new();
    for pa in policies.iter().filter(|pa| pa.selector.is_empty()) {
        if let Some(first) = namespace_wide.get(pa.namespace.as_str()) {
            let scope = if pa.namespace == config.root_namespace {
                "mesh-wide".to_string()
            } else {
                format!("namespace-wide policy for {}", pa.namespace)
            };
            warnings.push(format!(
                "{}: {}: another {scope} PeerAuthentication, {}, comes first and takes precedence",
                pa.origin.file,
                pa.origin.resource,
                first.origin.describe()
            ));
        } else {
            namespace_wide.insert(&pa.namespace, pa);
        }
    }
    let mesh_mode = namespace_wide
        .get(config.root_namespace.as_str())
        .and_then(|pa| pa.mode)
        .unwrap_or(MtlsMode::Permissive);
    let namespace_mode = |ns: &str| {
        if ns == config.root_namespace {
            return mesh_mode;
        }
        namespace_wide
            .get(ns)
            .and_then(|pa| pa.mode)
            .unwrap_or(mesh_mode)
    };
    policies
        .iter()
        .map(|pa| {
            let inherited = if pa.selector.is_empty() {
                if pa.namespace == config.root_namespace {
                    MtlsMode::Permissive
                } else {
                    mesh_mode
                }
            } else {
                namespace_mode(&pa.namespace)
            };
            PeerAuthentication {
                name: pa.name.clone(),
                namespace: pa.namespace.clone(),
                selector: pa.selector.clone(),
                mode: pa.mode.unwrap_or(inherited),
            }
        })
        .collect()
}

/// Detects duplicate names per kind.
#[derive(Default)]
struct Seen {
    first: HashMap<(String, String), Origin>,
}

impl Seen {
    /// True the first time `kind`/`name` is seen; a duplicate is a problem.
    fn first(
        &mut self,
        kind: &str,
        name: &str,
        origin: &Origin,
        problems: &mut Vec<Problem>,
    ) -> bool {
        let key = (kind.to_string(), name.to_string());
        match self.first.get(&key) {
            Some(first) => {
                problems.push(origin.problem(
                    "metadata.name",
                    format!("duplicate: also defined in {}", first.location()),
                ));
                false
            }
            None => {
                self.first.insert(key, origin.clone());
                true
            }
        }
    }
}
