//! Where L7 configuration has no proxy to run on: VirtualServices whose
//! hosts name no service of the mesh or that bind only to gateways (this
//! mesh runs no ingress gateway), `networking.istio.io` Gateways nothing
//! serves, and services with VirtualService / DestinationRule rules but no
//! waypoint (`istio.io/use-waypoint`), whose traffic stays L4; and routes
//! a waypoint cannot run.
use std::collections::BTreeSet;

use serde_yaml::Value;

use super::{codes, Finding, Severity};
use crate::{
    model::{MeshState, Service},
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
    match &svc.waypoint {
        None => Some(format!(
            "Service {}/{} uses no waypoint (no istio.io/use-waypoint label on it or its namespace)",
            svc.namespace, svc.name
        )),
        Some(r) if state.waypoint(r).is_none() => Some(format!(
            "Service {}/{} uses waypoint {r}, which does not exist",
            svc.namespace, svc.name
        )),
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
            findings.push(warning(
                codes::VS_GATEWAY_ONLY,
                vs.resource(),
                &vs.file,
                "spec.gateways",
                format!(
                    "bound only to gateway(s) {}: this mesh runs no ingress gateway, so this VirtualService routes nothing",
                    vs.gateways.join(", ")
                ),
                "add \"mesh\" to spec.gateways to apply it to in-mesh traffic (through a waypoint), or remove it",
            ));
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

    for gw in snapshot
        .raw
        .iter()
        .filter(|r| r.kind == "Gateway" && r.api_version.starts_with("networking.istio.io/"))
    {
        let selector: Vec<(String, String)> = gw.value["spec"]
            .get("selector")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
            .collect();
        let pods = state
            .workloads
            .values()
            .filter(|w| selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            .count();
        let shown: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let backing = if selector.is_empty() || pods == 0 {
            format!("selector {{{}}} matches no pod", shown.join(","))
        } else {
            format!(
                "selector {{{}}} matches {pods} pod(s), which this mesh does not configure",
                shown.join(",")
            )
        };
        findings.push(warning(
            codes::GATEWAY_UNBACKED,
            format!("Gateway {}/{}", gw.namespace, gw.name),
            &gw.file,
            "spec.selector",
            format!("{backing}: this mesh runs no ingress/egress gateway, so this Gateway serves nothing"),
            "route in-mesh traffic with VirtualServices bound to \"mesh\" and a waypoint; ingress gateways are not supported yet",
        ));
    }
}
