//! `meshctl x describe pod <pod>[.<ns>]`: what the mesh does with one pod,
//! from one read of the control plane's `/config_dump`
//! (docs/contracts/control-admin.md): its workload, the Services selecting
//! it, the VirtualServices and DestinationRules for those Services that
//! its namespace sees (`exportTo`), their waypoint, the
//! AuthorizationPolicies applying to it and its PeerAuthentication mode.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::{
    pod::{find_pod, PodInfo, PodRef},
    render::{self, Output},
};

/// Istio's root namespace: mesh-wide policies live there.
const ROOT_NAMESPACE: &str = "istio-system";
const ADDRESS_TYPE_URL: &str = "type.googleapis.com/istio.workload.Address";
const AUTHORIZATION_TYPE_URL: &str = "type.googleapis.com/istio.security.Authorization";

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub pod: String,
    pub namespace: String,
    pub identity: String,
    pub node: String,
    pub ips: Vec<String>,
    /// In the mesh (HBONE) or not.
    pub mesh: bool,
    /// `ns/name` of the waypoint the pod's own traffic goes through.
    pub waypoint: Option<String>,
    /// `ns/name` of the waypoint this pod runs, if it is one.
    pub serves_waypoint: Option<String>,
    pub services: Vec<ServiceSummary>,
    pub authorization_policies: Vec<PolicySummary>,
    pub peer_authentication: PeerAuthSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    /// Service port → target port.
    pub ports: BTreeMap<String, Value>,
    pub waypoint: Option<String>,
    /// `ns/name` of the VirtualServices for this host the pod's namespace sees.
    pub virtual_services: Vec<String>,
    pub destination_rules: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    pub name: String,
    pub namespace: String,
    /// `mesh-wide`, `namespace` or `selector` (as the control plane
    /// scoped it), or `waypoint` (a targetRef to one of the pod's Services).
    pub scope: String,
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerAuthSummary {
    /// STRICT, PERMISSIVE or DISABLE; PERMISSIVE when nothing sets it.
    pub mode: String,
    /// `ns/name` of the PeerAuthentication deciding it, most specific.
    pub from: Option<String>,
}

fn list<'a>(doc: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    doc[key].as_array().into_iter().flatten()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Whether `selector` (a label map, or `{"matchLabels": …}`) selects `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let map = selector.get("matchLabels").unwrap_or(selector);
    map.as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    })
}

/// Whether a host of a VirtualService / DestinationRule in namespace
/// `res_ns` names `hostname`: the full name, `name`, `name.ns`, or a
/// wildcard, as Istio resolves short names in the resource's namespace.
fn host_names(host: &str, res_ns: &str, hostname: &str) -> bool {
    if host == "*" || host == hostname {
        return true;
    }
    if let Some(suffix) = host.strip_prefix('*') {
        return hostname.ends_with(suffix);
    }
    let candidate = if host.contains('.') {
        format!("{host}.svc.")
    } else {
        format!("{host}.{res_ns}.svc.")
    };
    hostname.starts_with(&candidate)
}

/// Whether a resource of namespace `res_ns` with `spec.exportTo` is
/// visible from namespace `ns`.
fn exported_to(spec: &Value, res_ns: &str, ns: &str) -> bool {
    let Some(list) = spec["exportTo"].as_array().filter(|l| !l.is_empty()) else {
        return true;
    };
    list.iter()
        .filter_map(Value::as_str)
        .any(|e| e == "*" || e == ns || (e == "." && res_ns == ns))
}

fn key(doc: &Value) -> String {
    format!("{}/{}", namespace_of(doc), str_of(&doc["metadata"], "name"))
}

fn namespace_of(doc: &Value) -> &str {
    match str_of(&doc["metadata"], "namespace") {
        "" => "default",
        ns => ns,
    }
}

/// The summary of `pod` from the control plane's dump `doc`.
pub fn summarize(doc: &Value, pod: &PodRef) -> anyhow::Result<Summary> {
    let info = find_pod(doc, pod)?;
    let resources: Vec<&Value> = list(doc, "resources").collect();
    let of_kind = |kind: &'static str| resources.iter().copied().filter(move |r| r["kind"] == kind);

    // The waypoints: the one the pod runs, and the one its traffic uses
    // (the xDS workload's waypoint address).
    let waypoints: Vec<&Value> = list(doc, "waypoints").collect();
    let wp_key = |w: &Value| format!("{}/{}", str_of(w, "namespace"), str_of(w, "name"));
    let serves_waypoint = waypoints
        .iter()
        .find(|w| list(w, "pods").any(|p| p.as_str() == Some(info.uid.as_str())))
        .map(|w| wp_key(w));
    let xds_workload = list(&doc["xds"], ADDRESS_TYPE_URL)
        .map(|e| &e["resource"]["workload"])
        .find(|w| w["uid"].as_str() == Some(info.uid.as_str()));
    let waypoint = xds_workload
        .and_then(|w| w["waypoint"]["destination"]["address"]["address"].as_str())
        .and_then(|ip| waypoints.iter().find(|w| w["address"].as_str() == Some(ip)))
        .map(|w| wp_key(w));

    let services = services_of(doc, &info, &of_kind);

    // Policies: as the control plane scoped them for this workload.
    let applied: Vec<&str> = xds_workload
        .map(|w| {
            list(w, "authorization_policies")
                .filter_map(Value::as_str)
                .collect()
        })
        .unwrap_or_default();
    let mut authorization_policies: Vec<PolicySummary> = list(&doc["xds"], AUTHORIZATION_TYPE_URL)
        .map(|e| &e["resource"])
        .filter_map(|p| {
            let (name, ns) = (str_of(p, "name"), str_of(p, "namespace"));
            let scope = match str_of(p, "scope") {
                "GLOBAL" => "mesh-wide",
                "NAMESPACE" if ns == info.namespace => "namespace",
                _ if applied.contains(&format!("{ns}/{name}").as_str()) => "selector",
                _ => return None,
            };
            Some(PolicySummary {
                name: name.into(),
                namespace: ns.into(),
                scope: scope.into(),
                action: match str_of(p, "action") {
                    "" => "ALLOW".into(),
                    a => a.into(),
                },
            })
        })
        .collect();
    // targetRef(s) to one of the pod's Services: enforced by its waypoint.
    for p in of_kind("AuthorizationPolicy") {
        let spec = &p["spec"];
        let refs: Vec<&Value> = spec["targetRef"]
            .is_object()
            .then_some(&spec["targetRef"])
            .into_iter()
            .chain(list(spec, "targetRefs"))
            .collect();
        let ns = namespace_of(p);
        let hits = refs.iter().any(|r| {
            r["kind"] == "Service"
                && services
                    .iter()
                    .any(|s| s.namespace == ns && Some(s.name.as_str()) == r["name"].as_str())
        });
        if hits {
            authorization_policies.push(PolicySummary {
                name: str_of(&p["metadata"], "name").into(),
                namespace: ns.into(),
                scope: "waypoint".into(),
                action: match str_of(spec, "action") {
                    "" => "ALLOW".into(),
                    a => a.into(),
                },
            });
        }
    }

    Ok(Summary {
        pod: info.name.clone(),
        namespace: info.namespace.clone(),
        identity: info.identity.clone(),
        node: info.node.clone(),
        ips: info.ips.clone(),
        mesh: info.mesh,
        waypoint,
        serves_waypoint,
        services,
        authorization_policies,
        peer_authentication: peer_auth(doc, &info),
    })
}

fn services_of<'a, I: Iterator<Item = &'a Value>>(
    doc: &Value,
    info: &PodInfo,
    of_kind: &impl Fn(&'static str) -> I,
) -> Vec<ServiceSummary> {
    // The workload's `services` keys are `<ns>/<hostname>`.
    let selecting: Vec<String> = doc["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| str_of(w, "uid") == info.uid)
        .and_then(|w| w["services"].as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    list(doc, "services")
        .filter(|s| {
            let by_host = format!("{}/{}", str_of(s, "namespace"), str_of(s, "hostname"));
            selecting.contains(&by_host) || selecting.iter().any(|k| k == str_of(s, "key"))
        })
        .map(|s| {
            let hostname = str_of(s, "hostname");
            let applies = |r: &Value, hosts: Vec<&str>| {
                let res_ns = namespace_of(r);
                exported_to(&r["spec"], res_ns, &info.namespace)
                    && hosts.iter().any(|h| host_names(h, res_ns, hostname))
            };
            let virtual_services = of_kind("VirtualService")
                .filter(|vs| {
                    // Bound to the mesh: no gateways, or `mesh` among them.
                    let gateways: Vec<&str> = list(&vs["spec"], "gateways")
                        .filter_map(Value::as_str)
                        .collect();
                    (gateways.is_empty() || gateways.contains(&"mesh"))
                        && applies(
                            vs,
                            list(&vs["spec"], "hosts")
                                .filter_map(Value::as_str)
                                .collect(),
                        )
                })
                .map(key)
                .collect();
            let destination_rules = of_kind("DestinationRule")
                .filter(|dr| applies(dr, vec![str_of(&dr["spec"], "host")]))
                .map(key)
                .collect();
            ServiceSummary {
                name: str_of(s, "name").into(),
                namespace: str_of(s, "namespace").into(),
                hostname: hostname.into(),
                ports: s["ports"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                waypoint: s["waypoint"].as_str().map(String::from),
                virtual_services,
                destination_rules,
            }
        })
        .collect()
}

/// The PeerAuthentication deciding the pod's mode: a selector matching
/// it, else its namespace's, else the mesh-wide one.
fn peer_auth(doc: &Value, info: &PodInfo) -> PeerAuthSummary {
    let all: Vec<&Value> = list(doc, "peer_authentications").collect();
    let empty = |p: &Value| p["selector"].as_object().is_none_or(|m| m.is_empty());
    let workload = all.iter().find(|p| {
        str_of(p, "namespace") == info.namespace
            && !empty(p)
            && selects(&p["selector"], &info.labels)
    });
    let namespace = all
        .iter()
        .find(|p| str_of(p, "namespace") == info.namespace && empty(p));
    let mesh = all
        .iter()
        .find(|p| str_of(p, "namespace") == ROOT_NAMESPACE && empty(p));
    match workload.or(namespace).or(mesh) {
        Some(p) => PeerAuthSummary {
            mode: str_of(p, "mode").into(),
            from: Some(format!("{}/{}", str_of(p, "namespace"), str_of(p, "name"))),
        },
        None => PeerAuthSummary {
            mode: "PERMISSIVE".into(),
            from: None,
        },
    }
}

fn or_none(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("none")
}

/// The text (or `-o json|yaml`) of a summary.
pub fn render(s: &Summary, output: Output) -> String {
    if let Some(text) = render::data(&serde_json::to_value(s).unwrap_or_default(), output) {
        return text;
    }
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!("Pod: {}.{}", s.pod, s.namespace));
    line(format!("   Identity: {}", s.identity));
    line(format!("   Node: {}  IPs: {}", s.node, s.ips.join(",")));
    line(format!(
        "   Mesh: {}",
        if s.mesh {
            "yes (HBONE)"
        } else {
            "no (plain TCP)"
        }
    ));
    line(format!("   Waypoint: {}", or_none(&s.waypoint)));
    if let Some(w) = &s.serves_waypoint {
        line(format!("   Runs waypoint: {w}"));
    }
    if s.services.is_empty() {
        line("Services: none select this pod".into());
    }
    for svc in &s.services {
        let ports: Vec<String> = svc.ports.iter().map(|(p, t)| format!("{p}->{t}")).collect();
        line(format!(
            "Service: {}.{}  ports {}",
            svc.name,
            svc.namespace,
            ports.join(",")
        ));
        line(format!("   Waypoint: {}", or_none(&svc.waypoint)));
        for vs in &svc.virtual_services {
            line(format!("   VirtualService: {vs}"));
        }
        for dr in &svc.destination_rules {
            line(format!("   DestinationRule: {dr}"));
        }
    }
    if s.authorization_policies.is_empty() {
        line("AuthorizationPolicies: none".into());
    }
    for p in &s.authorization_policies {
        line(format!(
            "AuthorizationPolicy: {}/{}  {} ({})",
            p.namespace, p.name, p.action, p.scope
        ));
    }
    line(format!(
        "PeerAuthentication: {}{}",
        s.peer_authentication.mode,
        s.peer_authentication
            .from
            .as_ref()
            .map_or(" (default)".into(), |f| format!(" ({f})"))
    ));
    out
}

#[cfg(test)]
mod tests;
