//! A Gateway API Gateway (class `istio`) → the Istio Gateway istiod
//! generates for it: one server per listener it serves (HTTP; HTTPS with
//! `tls.mode: Terminate` and a Secret of its namespace), and each
//! listener's status.
use std::collections::BTreeMap;

use super::{
    gateway::{GatewayObj, Listener, ListenerProtocol, ListenerTlsMode},
    reference_grant::{self, Reference},
    resolve::generated_name,
    status::{Condition, ConditionType, ListenerStatus, Reason},
    GatewayApiObjects, GROUP,
};
use crate::model::{
    ingress::{IngressGateway, Protocol, Server, ServerTls, TlsMode},
    waypoint::GATEWAY_NAME_LABEL,
};

/// A Gateway as the Istio Gateway istiod generates (one server per served
/// listener) and each listener's status with whether it is served.
pub(crate) fn gateway(
    gw: &GatewayObj,
    objects: &GatewayApiObjects,
) -> (IngressGateway, Vec<(ListenerStatus, bool)>) {
    let mut servers = vec![];
    let mut listeners = vec![];
    for (i, l) in gw.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        let (server, mut conditions) = listener_server(gw, l, objects, &field);
        let kinds_ok =
            l.allowed_kinds.is_empty() || l.allowed_kinds.iter().any(|k| k == "HTTPRoute");
        let takes_routes = l.protocol.takes_http_routes() && kinds_ok;
        if l.protocol.takes_http_routes() && !kinds_ok {
            conditions.push(Condition::failed(
                ConditionType::ResolvedRefs,
                Reason::InvalidRouteKinds,
                format!("{field}.allowedRoutes.kinds"),
                "no kind this listener takes (HTTPRoute) is allowed",
            ));
        }
        if !conditions
            .iter()
            .any(|c| c.kind == ConditionType::ResolvedRefs)
        {
            conditions.push(Condition::ok(
                ConditionType::ResolvedRefs,
                Reason::ResolvedRefs,
                "resolved",
            ));
        }
        let served = server.is_some();
        if served {
            conditions.push(Condition::ok(
                ConditionType::Programmed,
                Reason::Programmed,
                "programmed",
            ));
        } else {
            conditions.push(Condition::failed(
                ConditionType::Programmed,
                Reason::UnsupportedValue,
                &field,
                "not served (see Accepted and ResolvedRefs)",
            ));
        }
        servers.extend(server);
        listeners.push((
            ListenerStatus {
                name: l.name.clone(),
                field,
                attached_routes: 0,
                supported_kinds: if takes_routes {
                    vec!["HTTPRoute"]
                } else {
                    vec![]
                },
                conditions,
            },
            served,
        ));
    }
    let ingress = IngressGateway {
        name: generated_name(&gw.name),
        namespace: gw.namespace.clone(),
        file: gw.origin.file.clone(),
        selector: BTreeMap::from([(GATEWAY_NAME_LABEL.to_string(), gw.name.clone())]),
        pods_namespace: Some(gw.namespace.clone()),
        servers,
    };
    (ingress, listeners)
}

/// The server of a listener, `None` when it is not served; the
/// listener's `Accepted` (and `ResolvedRefs` when a reference fails).
fn listener_server(
    gw: &GatewayObj,
    l: &Listener,
    objects: &GatewayApiObjects,
    field: &str,
) -> (Option<Server>, Vec<Condition>) {
    let accepted = || Condition::ok(ConditionType::Accepted, Reason::Accepted, "accepted");
    let unsupported = |why: String| {
        (
            None,
            vec![Condition::failed(
                ConditionType::Accepted,
                Reason::UnsupportedProtocol,
                format!("{field}.protocol"),
                why,
            )],
        )
    };
    let hosts = vec![l.hostname.clone().unwrap_or_else(|| "*".into())];
    match (&l.protocol, &l.tls) {
        (ListenerProtocol::Http, _) => (
            Some(Server {
                port: l.port,
                port_name: l.name.clone(),
                protocol: Protocol::Http,
                hosts,
                tls: None,
            }),
            vec![accepted()],
        ),
        (ListenerProtocol::Https, Some(tls)) if tls.mode == ListenerTlsMode::Terminate => {
            let cert = &tls.certificate_refs[0];
            let ref_field = format!("{field}.tls.certificateRefs[0]");
            let failed = |reason, message: String| {
                (
                    None,
                    vec![
                        accepted(),
                        Condition::failed(
                            ConditionType::ResolvedRefs,
                            reason,
                            ref_field.clone(),
                            message,
                        ),
                    ],
                )
            };
            if !(cert.group.is_empty() && cert.kind == "Secret") {
                return failed(
                    Reason::InvalidCertificateRef,
                    format!(
                        "a certificateRef names a Secret (group \"\"), not {:?} {}",
                        cert.group, cert.kind
                    ),
                );
            }
            let cert_ns = cert.namespace.as_deref().unwrap_or(&gw.namespace);
            if cert_ns != gw.namespace {
                let permitted = reference_grant::permitted(
                    &objects.grants,
                    Reference {
                        from_group: GROUP,
                        from_kind: "Gateway",
                        from_namespace: &gw.namespace,
                        to_group: "",
                        to_kind: "Secret",
                        to_namespace: cert_ns,
                        to_name: &cert.name,
                    },
                );
                let message = if permitted {
                    format!("Secret {cert_ns}/{}: certificates of another namespace are not supported yet (the gateway reads --credential-dir/<name>)", cert.name)
                } else {
                    format!("Secret {cert_ns}/{}: no ReferenceGrant in {cert_ns} lets Gateways of {} refer to it", cert.name, gw.namespace)
                };
                return failed(Reason::RefNotPermitted, message);
            }
            (
                Some(Server {
                    port: l.port,
                    port_name: l.name.clone(),
                    protocol: Protocol::Https,
                    hosts,
                    tls: Some(ServerTls {
                        mode: Some(TlsMode::Simple),
                        https_redirect: false,
                        server_certificate: None,
                        private_key: None,
                        ca_certificates: None,
                        credential_name: Some(cert.name.clone()),
                    }),
                }),
                vec![accepted()],
            )
        }
        (ListenerProtocol::Https, _) => unsupported(
            "HTTPS with tls.mode Passthrough is not supported yet (Terminate is)".into(),
        ),
        (p, _) => unsupported(format!(
            "protocol {} is not supported yet (HTTP, and HTTPS with tls.mode Terminate, are)",
            p.as_str()
        )),
    }
}
