//! Relating the Gateway API objects to each other and to the mesh:
//! Gateways → [`IngressGateway`]s, HTTPRoutes attached to their listeners
//! (or to Services) → VirtualServices, and the [`Status`] of both.
//! Nothing here rejects a resource: a parent or backend that does not
//! resolve is a `False` condition, as in Gateway API.
use std::collections::BTreeMap;

use super::{
    convert::{self, At},
    gateway::{AllowedNamespaces, GatewayObj},
    http_route::{BackendRef, Filter, HttpRouteObj, ParentRef},
    reference_grant::{self, Reference},
    status::{
        Condition, ConditionType, GatewayStatus, ListenerStatus, ParentStatus, Reason, RouteStatus,
        Status,
    },
    GatewayApiObjects, GENERATED_SUFFIX, GROUP,
};
use crate::model::{
    ingress::IngressGateway, routing::VirtualService, waypoint::GATEWAY_NAME_LABEL, MeshState,
};

/// What the Gateway API objects add to the state.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub gateways: Vec<IngressGateway>,
    pub virtual_services: Vec<VirtualService>,
    pub status: Status,
}

/// The Istio Gateway name istiod generates for Gateway API Gateway `name`.
pub fn generated_name(name: &str) -> String {
    format!("{name}-{GENERATED_SUFFIX}")
}

/// Where converted route entries go: one VirtualService each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Bucket {
    /// Gateway index, listener port, virtual host.
    Gateway { gw: usize, port: u16, host: String },
    /// Service key in the state, parentRef port.
    Mesh { service: String, port: Option<u16> },
}

/// A rule match of a route, in route order.
#[derive(Debug, Clone, Copy)]
struct Row {
    route: usize,
    rule: usize,
    matched: usize,
}

/// `namespaces`: labels by namespace name (for `allowedRoutes` selectors).
pub(crate) fn resolve(
    objects: &GatewayApiObjects,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    state: &MeshState,
) -> Resolved {
    let mut out = Resolved::default();
    // Listener status, and whether each listener is served.
    let mut listener_status: Vec<Vec<(ListenerStatus, bool)>> = vec![];
    for gw in &objects.gateways {
        let (ingress, listeners) = super::listeners::gateway(gw, objects);
        out.gateways.push(ingress);
        listener_status.push(listeners);
    }

    // Oldest first, then by namespace/name (Gateway API's tie-break).
    let mut order: Vec<usize> = (0..objects.routes.len()).collect();
    order.sort_by_key(|&i| {
        let r = &objects.routes[i];
        (
            r.meta.created.is_none(),
            r.meta.created.clone(),
            r.namespace.clone(),
            r.name.clone(),
        )
    });
    let domain = state.cluster_domain().to_string();
    let mut buckets: BTreeMap<Bucket, Vec<Row>> = BTreeMap::new();
    for &ri in &order {
        let route = &objects.routes[ri];
        let refs = backends(route, objects, state);
        let mut parents = vec![];
        for (pi, parent) in route.parents.iter().enumerate() {
            let field = format!("spec.parentRefs[{pi}]");
            let accepted = if parent.is_gateway() {
                let Some(gi) = objects
                    .gateways
                    .iter()
                    .position(|g| g.namespace == parent.namespace && g.name == parent.name)
                else {
                    let other = objects
                        .other_gateways
                        .iter()
                        .any(|(ns, n)| *ns == parent.namespace && *n == parent.name);
                    if other {
                        // Another controller's Gateway: not ours to report on.
                        continue;
                    }
                    parents.push(ParentStatus {
                        parent: parent.clone(),
                        field: field.clone(),
                        conditions: vec![
                            Condition::failed(
                                ConditionType::Accepted,
                                Reason::NoMatchingParent,
                                &field,
                                format!("no Gateway {}/{} exists", parent.namespace, parent.name),
                            ),
                            refs.condition.clone(),
                        ],
                    });
                    continue;
                };
                let gw = &objects.gateways[gi];
                let attach = attach(route, parent, gw, namespaces, &field);
                match attach {
                    Ok(hosts) => {
                        for (li, hosts) in hosts {
                            let (status, served) = &mut listener_status[gi][li];
                            status.attached_routes += 1;
                            if !*served {
                                continue;
                            }
                            for host in hosts {
                                let bucket = Bucket::Gateway {
                                    gw: gi,
                                    port: gw.listeners[li].port,
                                    host,
                                };
                                add_rows(&mut buckets, bucket, ri, route);
                            }
                        }
                        Condition::ok(ConditionType::Accepted, Reason::Accepted, "accepted")
                    }
                    Err(failed) => failed,
                }
            } else if parent.is_service() {
                let key = format!(
                    "{}/{}",
                    parent.namespace,
                    convert::service_host(&parent.name, &parent.namespace, &domain)
                );
                if state.services.contains_key(&key) {
                    let bucket = Bucket::Mesh {
                        service: key,
                        port: parent.port,
                    };
                    add_rows(&mut buckets, bucket, ri, route);
                    Condition::ok(ConditionType::Accepted, Reason::Accepted, "accepted")
                } else {
                    Condition::failed(
                        ConditionType::Accepted,
                        Reason::NoMatchingParent,
                        &field,
                        format!("no Service {}/{} exists", parent.namespace, parent.name),
                    )
                }
            } else {
                Condition::failed(
                    ConditionType::Accepted,
                    Reason::NoMatchingParent,
                    &field,
                    format!(
                        "a parentRef of group {:?} kind {} is not supported (a Gateway or a Service)",
                        parent.group, parent.kind
                    ),
                )
            };
            parents.push(ParentStatus {
                parent: parent.clone(),
                field,
                conditions: vec![accepted, refs.condition.clone()],
            });
        }
        out.status.routes.push(RouteStatus {
            namespace: route.namespace.clone(),
            name: route.name.clone(),
            file: route.origin.file.clone(),
            generation: route.meta.generation,
            parents,
        });
    }

    for (bucket, mut rows) in buckets {
        // Stable: equal precedence keeps route order, then rule, then match.
        rows.sort_by(|a, b| {
            let key = |r: &Row| {
                convert::precedence(&objects.routes[r.route].rules[r.rule].matches[r.matched])
            };
            key(b).cmp(&key(a))
        });
        let first = &objects.routes[rows[0].route];
        let (name, namespace, hosts, gateway, port) = match &bucket {
            Bucket::Gateway { gw, port, host } => {
                let g = &objects.gateways[*gw];
                let label = if host == "*" { "wildcard" } else { host };
                (
                    format!("{}-{port}-{label}", g.name),
                    g.namespace.clone(),
                    vec![host.clone()],
                    format!("{}/{}", g.namespace, generated_name(&g.name)),
                    Some(*port),
                )
            }
            Bucket::Mesh { service, port } => {
                let svc = &state.services[service];
                let suffix = port.map_or("all".to_string(), |p| p.to_string());
                (
                    format!("{}-{suffix}-mesh", svc.name),
                    svc.namespace.clone(),
                    vec![svc.hostname.clone()],
                    "mesh".to_string(),
                    *port,
                )
            }
        };
        let at = At {
            gateway: &gateway,
            port,
            cluster_domain: &domain,
        };
        let mut http = vec![];
        for row in &rows {
            let route = &objects.routes[row.route];
            let refs = backends(route, objects, state);
            http.extend(convert::http_routes(
                route,
                row.rule,
                row.matched,
                &refs.resolved[row.rule],
                &refs.mirrors[row.rule],
                &at,
            ));
        }
        out.virtual_services.push(VirtualService {
            name: format!("httproute-{name}"),
            namespace,
            file: first.origin.file.clone(),
            hosts,
            gateways: vec![gateway.clone()],
            export_to: vec![],
            http,
            tcp: vec![],
            tls: vec![],
            unknown: vec![],
        });
    }

    for (gw, listeners) in objects.gateways.iter().zip(listener_status) {
        let has_pods = state.workloads.values().any(|w| {
            w.namespace == gw.namespace
                && w.labels.get(GATEWAY_NAME_LABEL).map(String::as_str) == Some(gw.name.as_str())
        });
        let programmed = if has_pods {
            Condition::ok(ConditionType::Programmed, Reason::Programmed, "programmed")
        } else {
            Condition::failed(
                ConditionType::Programmed,
                Reason::NoResources,
                "metadata.name",
                format!(
                    "no pod of namespace {} is labelled {GATEWAY_NAME_LABEL}={}: mesh-control deploys no gateway pods; run mesh-waypoint --role gateway with that label",
                    gw.namespace, gw.name
                ),
            )
        };
        out.status.gateways.push(GatewayStatus {
            namespace: gw.namespace.clone(),
            name: gw.name.clone(),
            file: gw.origin.file.clone(),
            generation: gw.meta.generation,
            conditions: vec![
                Condition::ok(ConditionType::Accepted, Reason::Accepted, "accepted"),
                programmed,
            ],
            listeners: listeners.into_iter().map(|(s, _)| s).collect(),
        });
    }
    out
}

fn add_rows(
    buckets: &mut BTreeMap<Bucket, Vec<Row>>,
    bucket: Bucket,
    ri: usize,
    route: &HttpRouteObj,
) {
    let rows = buckets.entry(bucket).or_default();
    for (rule, r) in route.rules.iter().enumerate() {
        for matched in 0..r.matches.len() {
            rows.push(Row {
                route: ri,
                rule,
                matched,
            });
        }
    }
}

/// Why `route` attaches to no listener of `gw`, or the listeners it
/// attaches to (index) with the virtual hosts on each.
fn attach(
    route: &HttpRouteObj,
    parent: &ParentRef,
    gw: &GatewayObj,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    field: &str,
) -> Result<Vec<(usize, Vec<String>)>, Condition> {
    let fail = |reason, message: String| {
        Err(Condition::failed(
            ConditionType::Accepted,
            reason,
            field,
            message,
        ))
    };
    let candidates: Vec<usize> = gw
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| p == l.port)
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return fail(
            Reason::NoMatchingParent,
            format!(
                "Gateway {}/{} has no listener{}{}",
                gw.namespace,
                gw.name,
                parent
                    .section_name
                    .as_ref()
                    .map_or(String::new(), |s| format!(" named {s:?}")),
                parent
                    .port
                    .map_or(String::new(), |p| format!(" on port {p}")),
            ),
        );
    }
    let mut attached = vec![];
    let mut not_allowed = None;
    for li in candidates {
        let l = &gw.listeners[li];
        let kinds_ok =
            l.allowed_kinds.is_empty() || l.allowed_kinds.iter().any(|k| k == "HTTPRoute");
        if !l.protocol.takes_http_routes() || !kinds_ok {
            not_allowed.get_or_insert(format!(
                "listener {:?} ({}) takes no HTTPRoutes",
                l.name,
                l.protocol.as_str()
            ));
            continue;
        }
        let ns_ok = match &l.allowed_namespaces {
            AllowedNamespaces::Same => route.namespace == gw.namespace,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(sel) => namespaces
                .get(&route.namespace)
                .is_some_and(|labels| sel.matches(labels)),
        };
        if !ns_ok {
            not_allowed.get_or_insert(format!(
                "listener {:?} does not allow routes of namespace {} (allowedRoutes.namespaces)",
                l.name, route.namespace
            ));
            continue;
        }
        let hosts = intersect(l.hostname.as_deref(), &route.hostnames);
        if hosts.is_empty() {
            continue;
        }
        attached.push((li, hosts));
    }
    if !attached.is_empty() {
        return Ok(attached);
    }
    match not_allowed {
        Some(why) => fail(Reason::NotAllowedByListeners, why),
        None => fail(
            Reason::NoMatchingListenerHostname,
            format!(
                "no hostname of the route ({}) is one a listener of Gateway {}/{} admits",
                route.hostnames.join(", "),
                gw.namespace,
                gw.name
            ),
        ),
    }
}

/// True when `pattern` (`*.example.com` or exact) admits `host` (itself
/// possibly a wildcard no wider).
fn admits(pattern: &str, host: &str) -> bool {
    pattern == host
        || pattern
            .strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
}

/// The virtual hosts a listener hostname and route hostnames share: the
/// narrower of each pair; `*` when neither restricts.
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    match (listener, route) {
        (None, []) => vec!["*".into()],
        (None, hosts) => hosts.to_vec(),
        (Some(l), []) => vec![l.to_string()],
        (Some(l), hosts) => {
            let mut out: Vec<String> = vec![];
            for h in hosts {
                let shared = if admits(l, h) {
                    Some(h.clone())
                } else if admits(h, l) {
                    Some(l.to_string())
                } else {
                    None
                };
                if let Some(s) = shared {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
            out
        }
    }
}

/// How a route's backends resolve.
struct Backends {
    /// Per rule, per backendRef.
    resolved: Vec<Vec<bool>>,
    /// Per rule, per RequestMirror filter.
    mirrors: Vec<Vec<bool>>,
    /// `ResolvedRefs`: `True`, or the first reference that failed.
    condition: Condition,
}

fn backends(route: &HttpRouteObj, objects: &GatewayApiObjects, state: &MeshState) -> Backends {
    let mut failed: Option<Condition> = None;
    let mut check = |b: &BackendRef| {
        let result = check_backend(route, b, objects, state);
        if let Err(c) = &result {
            failed.get_or_insert_with(|| c.clone());
        }
        result.is_ok()
    };
    let mut resolved = vec![];
    let mut mirrors = vec![];
    for rule in &route.rules {
        resolved.push(rule.backends.iter().map(&mut check).collect());
        mirrors.push(
            rule.filters
                .iter()
                .filter_map(|f| match f {
                    Filter::Mirror { backend, .. } => Some(check(backend)),
                    _ => None,
                })
                .collect(),
        );
    }
    Backends {
        resolved,
        mirrors,
        condition: failed.unwrap_or_else(|| {
            Condition::ok(
                ConditionType::ResolvedRefs,
                Reason::ResolvedRefs,
                "resolved",
            )
        }),
    }
}

fn check_backend(
    route: &HttpRouteObj,
    b: &BackendRef,
    objects: &GatewayApiObjects,
    state: &MeshState,
) -> Result<(), Condition> {
    let fail = |reason, message: String| {
        Err(Condition::failed(
            ConditionType::ResolvedRefs,
            reason,
            &b.field,
            message,
        ))
    };
    if !b.is_service() {
        return fail(
            Reason::InvalidKind,
            format!(
                "backendRef of group {:?} kind {} is not supported (a Service)",
                b.group, b.kind
            ),
        );
    }
    if !reference_grant::permitted(
        &objects.grants,
        Reference {
            from_group: GROUP,
            from_kind: "HTTPRoute",
            from_namespace: &route.namespace,
            to_group: "",
            to_kind: "Service",
            to_namespace: &b.namespace,
            to_name: &b.name,
        },
    ) {
        return fail(
            Reason::RefNotPermitted,
            format!(
                "Service {}/{}: no ReferenceGrant in {} lets HTTPRoutes of {} refer to it",
                b.namespace, b.name, b.namespace, route.namespace
            ),
        );
    }
    let key = format!(
        "{}/{}",
        b.namespace,
        convert::service_host(&b.name, &b.namespace, state.cluster_domain())
    );
    match state.services.get(&key) {
        None => fail(
            Reason::BackendNotFound,
            format!("no Service {}/{} exists", b.namespace, b.name),
        ),
        Some(svc) if b.port.is_some_and(|p| !svc.ports.contains_key(&p)) => fail(
            Reason::BackendNotFound,
            format!(
                "Service {}/{} has no port {}",
                b.namespace,
                b.name,
                b.port.unwrap_or_default()
            ),
        ),
        Some(_) => Ok(()),
    }
}
