//! What a waypoint's namespace cannot see (`exportTo`): VirtualServices
//! and DestinationRules naming a service whose waypoint runs in a
//! namespace they are not exported to, and DestinationRules another rule
//! takes precedence over in istiod's lookup (the waypoint's namespace,
//! then the service's, then the root namespace). Services without a
//! waypoint are MESH0107's business.
use std::collections::BTreeMap;

use super::{codes, Finding, Severity};
use crate::{
    model::{visibility, DestinationRule, MeshState, Service, VirtualService},
    source::{Snapshot, SourceConfig},
    translate::waypoint::{policy, routes, Cx},
};

/// Waypoint `<ns>/<name>` → the services of `services` it serves.
fn by_waypoint<'s>(
    state: &MeshState,
    services: impl Iterator<Item = &'s Service>,
) -> BTreeMap<(String, String), Vec<&'s Service>> {
    let mut out: BTreeMap<(String, String), Vec<&Service>> = BTreeMap::new();
    for svc in services {
        if let Some(wp) = state.service_waypoint(svc) {
            out.entry((wp.namespace.clone(), wp.name.clone()))
                .or_default()
                .push(svc);
        }
    }
    out
}

fn named(services: &[&Service]) -> String {
    let names: Vec<String> = services
        .iter()
        .map(|s| format!("Service {}/{}", s.namespace, s.name))
        .collect();
    names.join(", ")
}

fn not_exported(
    resource: String,
    file: &str,
    export_to: &[String],
    (ns, name): &(String, String),
    services: &[&Service],
    what: &str,
) -> Finding {
    Finding {
        severity: Severity::Warning,
        code: codes::NOT_EXPORTED,
        resource,
        file: (!file.is_empty()).then(|| file.to_string()),
        field: Some("spec.exportTo".into()),
        message: format!(
            "exportTo {} does not include namespace {ns}, where waypoint {ns}/{name} serves {}: that waypoint does not apply {what}",
            visibility::describe(export_to),
            named(services)
        ),
        suggestion: format!("add \"{ns}\" to spec.exportTo, or remove spec.exportTo to export it to every namespace"),
    }
}

pub(crate) fn check(snapshot: &Snapshot, config: &SourceConfig, findings: &mut Vec<Finding>) {
    let state = &snapshot.state;
    let cx = Cx::new(state).with_root_namespace(&config.root_namespace);
    for vs in &state.virtual_services {
        if !routes::mesh_bound(vs) || vs.hosts.is_empty() {
            continue;
        }
        let named = cx.services().filter(|s| routes::names_service(&cx, vs, s));
        for (wp, services) in by_waypoint(state, named) {
            if !vs.exported_to(&wp.0) {
                findings.push(vs_hidden(vs, &wp, &services));
            }
        }
    }
    for dr in state
        .destination_rules
        .iter()
        .filter(|dr| dr.workload_selector.is_none())
    {
        let named = cx.services().filter(|s| {
            cx.fqdn(&dr.host, &dr.namespace) == s.hostname
                || policy::wildcard_covers(&dr.host, &s.hostname)
        });
        for (wp, services) in by_waypoint(state, named) {
            if !dr.exported_to(&wp.0) {
                findings.push(dr_hidden(dr, &wp, &services));
                continue;
            }
            for svc in services {
                match policy::destination_rule_seen_from(&cx, svc, &wp.0) {
                    Some(applied) if applied != dr => {
                        findings.push(dr_shadowed(dr, applied, svc, &wp.0, cx.root_namespace))
                    }
                    _ => {}
                }
            }
        }
    }
}

fn vs_hidden(vs: &VirtualService, wp: &(String, String), services: &[&Service]) -> Finding {
    not_exported(
        vs.resource(),
        &vs.file,
        &vs.export_to,
        wp,
        services,
        "this VirtualService's routes to their traffic",
    )
}

fn dr_hidden(dr: &DestinationRule, wp: &(String, String), services: &[&Service]) -> Finding {
    not_exported(
        dr.resource(),
        &dr.file,
        &dr.export_to,
        wp,
        services,
        "this DestinationRule's subsets and traffic policy to their traffic",
    )
}

fn dr_shadowed(
    dr: &DestinationRule,
    applied: &DestinationRule,
    svc: &Service,
    viewer: &str,
    root: &str,
) -> Finding {
    Finding {
        severity: Severity::Warning,
        code: codes::DR_SHADOWED,
        resource: dr.resource(),
        file: (!dr.file.is_empty()).then(|| dr.file.clone()),
        field: Some("spec.host".into()),
        message: format!(
            "the waypoint of namespace {viewer} applies {} to Service {}/{} instead (DestinationRules are looked up in the waypoint's namespace, then the service's, then the root namespace {root}): this rule's subsets and traffic policy do not apply to it",
            applied.resource(),
            svc.namespace,
            svc.name
        ),
        suggestion: "keep one DestinationRule per host (merge the subsets and policies), or narrow the other rule's host or exportTo".into(),
    }
}
