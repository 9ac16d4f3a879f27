//! Where L7 configuration has no proxy to run on: VirtualServices whose
//! hosts name no service of the mesh or that bind only to gateways no
//! `networking.istio.io` Gateway defines, Gateways whose selector matches
//! no pod or whose servers the ingress gateway does not serve yet, and
//! services with VirtualService / DestinationRule rules but no waypoint
//! (`istio.io/use-waypoint`), whose traffic stays L4; and routes a
//! waypoint cannot run.
use std::collections::BTreeSet;

use serde_yaml::Value;

use super::{codes, Finding, Severity};
use crate::{
    model::{ingress::Protocol, MeshState, Service},
    source::Snapshot,
    translate::waypoint::{routes, Cx},
};

fn warning(
    code: &'static str,
    resource: String,
    file: &str,
    field: &str,
    message: String,
    suggestion: &str,
) -> Finding {
    Finding {
        severity: Severity::Warning,
        code,
        resource,
        file: (!file.is_empty()).then(|| file.to_string()),
        field: Some(field.to_string()),
        message,
        suggestion: suggestion.to_string(),
    }
}

/// Why `svc`'s traffic does not reach a waypoint, if it does not.
fn no_waypoint(state: &MeshState, svc: &Service) -> Option<String> {
    let shown = match &svc.external {
        Some(external) => format!("ServiceEntry {} host {}", external.entry, svc.hostname),
        None => format!("Service {}/{}", svc.namespace, svc.name),
    };
    match &svc.waypoint {
        None => Some(format!(
            "{shown} uses no waypoint (no istio.io/use-waypoint label on it or its namespace)"
        )),
        Some(r) if state.waypoint(r).is_none() => {
            Some(format!("{shown} uses waypoint {r}, which does not exist"))
        }
        Some(_) => None,
    }
}

pub(crate) fn check(snapshot: &Snapshot, findings: &mut Vec<Finding>) {
    let state = &snapshot.state;
    let cx = Cx::new(state);
    let service_entry_hosts: BTreeSet<String> = snapshot
        .raw
        .iter()
        .filter(|r| r.kind == "ServiceEntry")
        .flat_map(|r| {
            r.value["spec"]
                .get("hosts")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|h| cx.fqdn(h, &r.namespace))
                .collect::<Vec<_>>()
        })
        .collect();
    let suggest_waypoint = "label the Service (or its Namespace) istio.io/use-waypoint=<waypoint> and deploy a Gateway of class istio-waypoint";

    for vs in &state.virtual_services {
        if vs.hosts.is_empty() {
            continue; // a delegate
        }
        if !routes::mesh_bound(vs) {
            let missing: Vec<&str> = vs
                .gateways
                .iter()
                .filter(|g| {
                    !state
                        .ingress_gateways
                        .iter()
                        .any(|gw| gw.named_by(g, &vs.namespace))
                })
                .map(String::as_str)
                .collect();
            if missing.len() == vs.gateways.len() {
                findings.push(warning(
                    codes::VS_GATEWAY_ONLY,
                    vs.resource(),
                    &vs.file,
                    "spec.gateways",
                    format!(
                        "bound only to gateway(s) {}, which no networking.istio.io Gateway defines, so this VirtualService routes nothing",
                        missing.join(", ")
                    ),
                    "name an existing Gateway (<name> in this namespace, or <namespace>/<name>), or add \"mesh\" to apply it to in-mesh traffic (through a waypoint)",
                ));
            }
            continue;
        }
        let services: Vec<&Service> = cx
            .services()
            .filter(|s| routes::names_service(&cx, vs, s))
            .collect();
        let named_elsewhere = vs
            .hosts
            .iter()
            .any(|h| service_entry_hosts.contains(&cx.fqdn(h, &vs.namespace)));
        if services.is_empty() && !named_elsewhere && !vs.hosts.iter().any(|h| h == "*") {
            findings.push(warning(
                codes::VS_HOSTS_NO_SERVICE,
                vs.resource(),
                &vs.file,
                "spec.hosts",
                format!(
                    "hosts {} name no Service of the mesh (short names resolve in namespace {}): no waypoint applies this VirtualService",
                    vs.hosts.join(", "),
                    vs.namespace
                ),
                "name the Service these routes are for (e.g. reviews, or reviews.<namespace>.svc.cluster.local)",
            ));
        }
        if vs.hosts.iter().any(|h| h == "*") {
            continue; // applies wherever a waypoint is; nothing specific to say
        }
        for svc in services {
            if let Some(why) = no_waypoint(state, svc) {
                findings.push(warning(
                    codes::L7_WITHOUT_WAYPOINT,
                    vs.resource(),
                    &vs.file,
                    "spec.hosts",
                    format!(
                        "{why}: this VirtualService's L7 routing does not apply to its traffic"
                    ),
                    suggest_waypoint,
                ));
            }
        }
    }

    for dr in &state.destination_rules {
        let Some(svc) = cx.service(&dr.host, &dr.namespace) else {
            continue; // unknown hosts are MESH0101's business
        };
        if let Some(why) = no_waypoint(state, svc) {
            findings.push(warning(
                codes::L7_WITHOUT_WAYPOINT,
                dr.resource(),
                &dr.file,
                "spec.host",
                format!("{why}: this DestinationRule's subsets and traffic policy do not apply to its traffic"),
                suggest_waypoint,
            ));
        }
    }

    for (vs, field, message) in routes::problems(&cx) {
        findings.push(warning(
            codes::L7_ROUTE_UNSUPPORTED,
            vs.resource(),
            &vs.file,
            &field,
            format!("{message}; waypoints skip this route"),
            "express the route without this feature",
        ));
    }

    for gw in &state.ingress_gateways {
        let resource = format!("Gateway {}/{}", gw.namespace, gw.name);
        let pods = state
            .workloads
            .values()
            .filter(|w| gw.selects_workload(w))
            .count();
        if pods == 0 {
            let shown: Vec<String> = gw
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            findings.push(warning(
                codes::GATEWAY_UNBACKED,
                resource.clone(),
                &gw.file,
                "spec.selector",
                format!(
                    "selector {{{}}} matches no pod: no ingress gateway pod serves this Gateway",
                    shown.join(",")
                ),
                "deploy mesh-waypoint --role gateway with pods labelled as the selector says",
            ));
        }
        for (i, server) in gw.servers.iter().enumerate() {
            let Some(why) = server.unsupported() else {
                continue;
            };
            let field = if matches!(server.protocol, Protocol::Https | Protocol::Tls) {
                "tls.mode"
            } else {
                "port.protocol"
            };
            findings.push(warning(
                codes::GATEWAY_SERVER_UNSUPPORTED,
                resource.clone(),
                &gw.file,
                &format!("spec.servers[{i}].{field}"),
                format!(
                    "{why}: the ingress gateway does not serve port {}",
                    server.port
                ),
                "use tls.mode SIMPLE, MUTUAL or PASSTHROUGH",
            ));
        }
    }
}
