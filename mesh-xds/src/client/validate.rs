//! Decoding and validation of received resources: a response is applied
//! only if every resource in it decodes and passes its type's checks;
//! otherwise it is NACKed with a message naming the resource and the field.
use std::fmt;

use prost::Message;

use super::snapshot::XdsResource;
use crate::proto::{
    envoy_discovery::Resource,
    istio_security::{self, Authorization},
    istio_workload::{self, address, gateway_address, Address, GatewayAddress},
};

/// Why one resource was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {name:?} ({type_url}): {field}: {reason}")]
pub struct InvalidResource {
    pub type_url: String,
    pub name: String,
    /// Path of the offending field, e.g. `workload.addresses[1]`.
    pub field: String,
    pub reason: String,
}

/// A field path and what is wrong with it.
struct FieldError(String, String);

impl FieldError {
    fn new(field: impl fmt::Display, reason: impl fmt::Display) -> Self {
        FieldError(field.to_string(), reason.to_string())
    }
}

/// Decodes and validates one resource of a response of type `type_url`.
pub fn decode_resource(type_url: &str, res: &Resource) -> Result<XdsResource, InvalidResource> {
    decode_inner(type_url, res).map_err(|FieldError(field, reason)| InvalidResource {
        type_url: type_url.to_string(),
        name: res.name.clone(),
        field,
        reason,
    })
}

fn decode_inner(type_url: &str, res: &Resource) -> Result<XdsResource, FieldError> {
    if res.name.is_empty() {
        return Err(FieldError::new("name", "empty"));
    }
    let any = res
        .resource
        .as_ref()
        .ok_or_else(|| FieldError::new("resource", "missing"))?;
    if any.type_url != type_url {
        return Err(FieldError::new(
            "resource.type_url",
            format_args!("{:?} in a response of {type_url}", any.type_url),
        ));
    }
    let decode_err = |e: prost::DecodeError| FieldError::new("resource.value", e);
    match type_url {
        crate::ADDRESS_TYPE_URL => {
            let addr = Address::decode(any.value.as_slice()).map_err(decode_err)?;
            match addr.r#type {
                Some(address::Type::Workload(w)) => {
                    validate_workload(&w)?;
                    Ok(XdsResource::Workload(w))
                }
                Some(address::Type::Service(s)) => {
                    validate_service(&s)?;
                    Ok(XdsResource::Service(s))
                }
                // A kind of address this build does not know (a newer
                // control plane): kept as received, used by nobody.
                None => {
                    tracing::warn!(
                        resource = %res.name,
                        "address of an unknown kind (neither workload nor service): skipped"
                    );
                    Ok(XdsResource::Other(any.clone()))
                }
            }
        }
        crate::AUTHORIZATION_TYPE_URL => {
            let mut a = Authorization::decode(any.value.as_slice()).map_err(decode_err)?;
            let unknown =
                crate::unknown_fields::mark_unknown_authorization_fields(&any.value, &mut a);
            if unknown > 0 {
                tracing::warn!(
                    resource = %res.name, unknown,
                    "authorization policy has fields this agent does not know: their rules fail closed"
                );
            }
            validate_authorization(&a)?;
            Ok(XdsResource::Authorization(a))
        }
        crate::LISTENER_TYPE_URL => {
            let l = crate::proto::envoy_listener::Listener::decode(any.value.as_slice())
                .map_err(decode_err)?;
            check_name("name", &l.name, &res.name)?;
            Ok(XdsResource::Listener(Box::new(l)))
        }
        crate::ROUTE_TYPE_URL => {
            let r = crate::proto::envoy_route::RouteConfiguration::decode(any.value.as_slice())
                .map_err(decode_err)?;
            check_name("name", &r.name, &res.name)?;
            Ok(XdsResource::RouteConfiguration(Box::new(r)))
        }
        crate::CLUSTER_TYPE_URL => {
            let c = crate::proto::envoy_cluster::Cluster::decode(any.value.as_slice())
                .map_err(decode_err)?;
            check_name("name", &c.name, &res.name)?;
            Ok(XdsResource::Cluster(Box::new(c)))
        }
        crate::ENDPOINT_TYPE_URL => {
            let c =
                crate::proto::envoy_endpoint::ClusterLoadAssignment::decode(any.value.as_slice())
                    .map_err(decode_err)?;
            check_name("cluster_name", &c.cluster_name, &res.name)?;
            Ok(XdsResource::ClusterLoadAssignment(Box::new(c)))
        }
        _ => Ok(XdsResource::Other(any.clone())),
    }
}

/// Envoy resources carry their own name; it must be the resource's.
fn check_name(field: &str, inner: &str, outer: &str) -> Result<(), FieldError> {
    if inner != outer {
        return Err(FieldError::new(
            field,
            format_args!("{inner:?} differs from the resource name {outer:?}"),
        ));
    }
    Ok(())
}

fn check_ip(field: impl fmt::Display, bytes: &[u8]) -> Result<(), FieldError> {
    match bytes.len() {
        4 | 16 => Ok(()),
        n => Err(FieldError::new(
            field,
            format_args!("{n} bytes, want 4 (IPv4) or 16 (IPv6)"),
        )),
    }
}

fn check_port(field: impl fmt::Display, port: u32) -> Result<(), FieldError> {
    if port > u32::from(u16::MAX) {
        return Err(FieldError::new(
            field,
            format_args!("port {port} out of range"),
        ));
    }
    Ok(())
}

fn check_ports(field: &str, ports: &[istio_workload::Port]) -> Result<(), FieldError> {
    for (i, p) in ports.iter().enumerate() {
        check_port(format_args!("{field}[{i}].service_port"), p.service_port)?;
        check_port(format_args!("{field}[{i}].target_port"), p.target_port)?;
    }
    Ok(())
}

fn check_gateway(field: &str, gw: &GatewayAddress) -> Result<(), FieldError> {
    match &gw.destination {
        Some(gateway_address::Destination::Address(a)) => {
            check_ip(format_args!("{field}.address.address"), &a.address)?
        }
        Some(gateway_address::Destination::Hostname(h)) => {
            if h.hostname.is_empty() {
                return Err(FieldError::new(
                    format_args!("{field}.hostname.hostname"),
                    "empty",
                ));
            }
        }
        None => {
            return Err(FieldError::new(
                format_args!("{field}.destination"),
                "missing",
            ))
        }
    }
    check_port(format_args!("{field}.hbone_mtls_port"), gw.hbone_mtls_port)
}

fn validate_workload(w: &istio_workload::Workload) -> Result<(), FieldError> {
    if w.uid.is_empty() {
        return Err(FieldError::new("workload.uid", "empty"));
    }
    for (i, a) in w.addresses.iter().enumerate() {
        check_ip(format_args!("workload.addresses[{i}]"), a)?;
    }
    if let Some(gw) = &w.network_gateway {
        check_gateway("workload.network_gateway", gw)?;
    }
    if let Some(gw) = &w.waypoint {
        check_gateway("workload.waypoint", gw)?;
    }
    for (name, list) in &w.services {
        check_ports(&format!("workload.services[{name:?}].ports"), &list.ports)?;
    }
    Ok(())
}

fn validate_service(s: &istio_workload::Service) -> Result<(), FieldError> {
    if s.hostname.is_empty() {
        return Err(FieldError::new("service.hostname", "empty"));
    }
    for (i, a) in s.addresses.iter().enumerate() {
        check_ip(format_args!("service.addresses[{i}].address"), &a.address)?;
    }
    check_ports("service.ports", &s.ports)?;
    if let Some(gw) = &s.waypoint {
        check_gateway("service.waypoint", gw)?;
    }
    Ok(())
}

fn check_cidrs(field: &str, cidrs: &[istio_security::Address]) -> Result<(), FieldError> {
    for (i, c) in cidrs.iter().enumerate() {
        check_ip(format_args!("{field}[{i}].address"), &c.address)?;
        let max = if c.address.len() == 4 { 32 } else { 128 };
        if c.length > max {
            return Err(FieldError::new(
                format_args!("{field}[{i}].length"),
                format_args!("prefix length {} > {max}", c.length),
            ));
        }
    }
    Ok(())
}

fn validate_authorization(a: &Authorization) -> Result<(), FieldError> {
    if a.name.is_empty() {
        return Err(FieldError::new("authorization.name", "empty"));
    }
    for (ri, rule) in a.rules.iter().enumerate() {
        for (ci, clause) in rule.clauses.iter().enumerate() {
            for (mi, m) in clause.matches.iter().enumerate() {
                let at = format!("authorization.rules[{ri}].clauses[{ci}].matches[{mi}]");
                check_cidrs(&format!("{at}.source_ips"), &m.source_ips)?;
                check_cidrs(&format!("{at}.not_source_ips"), &m.not_source_ips)?;
                check_cidrs(&format!("{at}.destination_ips"), &m.destination_ips)?;
                check_cidrs(&format!("{at}.not_destination_ips"), &m.not_destination_ips)?;
                for (pi, p) in m.destination_ports.iter().enumerate() {
                    check_port(format_args!("{at}.destination_ports[{pi}]"), *p)?;
                }
                for (pi, p) in m.not_destination_ports.iter().enumerate() {
                    check_port(format_args!("{at}.not_destination_ports[{pi}]"), *p)?;
                }
                let string_matches = [
                    ("principals", &m.principals),
                    ("not_principals", &m.not_principals),
                    ("namespaces", &m.namespaces),
                    ("not_namespaces", &m.not_namespaces),
                ];
                for (name, list) in string_matches {
                    for (si, s) in list.iter().enumerate() {
                        if s.match_type.is_none() {
                            return Err(FieldError::new(
                                format_args!("{at}.{name}[{si}].match_type"),
                                "missing",
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{istio_workload::Workload, to_any};

    fn wl_resource(name: &str, w: Workload) -> Resource {
        let addr = Address {
            r#type: Some(address::Type::Workload(w)),
        };
        Resource {
            name: name.into(),
            version: "1".into(),
            resource: Some(to_any(crate::ADDRESS_TYPE_URL, &addr)),
            ..Default::default()
        }
    }

    #[test]
    fn valid_workload_decodes() {
        let w = Workload {
            uid: "u".into(),
            addresses: vec![vec![10, 0, 0, 1]],
            ..Default::default()
        };
        let got = decode_resource(crate::ADDRESS_TYPE_URL, &wl_resource("u", w.clone())).unwrap();
        assert_eq!(got, XdsResource::Workload(w));
    }

    #[test]
    fn bad_ip_names_resource_and_field() {
        let w = Workload {
            uid: "u".into(),
            addresses: vec![vec![10, 0, 0, 1], vec![1, 2, 3]],
            ..Default::default()
        };
        let err = decode_resource(crate::ADDRESS_TYPE_URL, &wl_resource("pod-a", w)).unwrap_err();
        assert_eq!(err.name, "pod-a");
        assert_eq!(err.field, "workload.addresses[1]");
        assert!(err.to_string().contains("\"pod-a\""), "{err}");
    }

    #[test]
    fn missing_uid_and_hostname_rejected() {
        let err = decode_resource(
            crate::ADDRESS_TYPE_URL,
            &wl_resource("x", Workload::default()),
        )
        .unwrap_err();
        assert_eq!(err.field, "workload.uid");
        let svc = Address {
            r#type: Some(address::Type::Service(Default::default())),
        };
        let res = Resource {
            name: "ns/h".into(),
            resource: Some(to_any(crate::ADDRESS_TYPE_URL, &svc)),
            ..Default::default()
        };
        assert_eq!(
            decode_resource(crate::ADDRESS_TYPE_URL, &res)
                .unwrap_err()
                .field,
            "service.hostname"
        );
    }

    #[test]
    fn wrong_any_type_and_garbage_rejected() {
        let mut res = wl_resource(
            "x",
            Workload {
                uid: "x".into(),
                ..Default::default()
            },
        );
        res.resource.as_mut().unwrap().type_url = crate::AUTHORIZATION_TYPE_URL.into();
        assert_eq!(
            decode_resource(crate::ADDRESS_TYPE_URL, &res)
                .unwrap_err()
                .field,
            "resource.type_url"
        );
        res.resource.as_mut().unwrap().type_url = crate::ADDRESS_TYPE_URL.into();
        res.resource.as_mut().unwrap().value = vec![0xff, 0xff, 0xff];
        assert_eq!(
            decode_resource(crate::ADDRESS_TYPE_URL, &res)
                .unwrap_err()
                .field,
            "resource.value"
        );
    }

    #[test]
    fn authorization_cidr_length_checked() {
        let a = Authorization {
            name: "p".into(),
            rules: vec![istio_security::Rule {
                clauses: vec![istio_security::Clause {
                    matches: vec![istio_security::Match {
                        source_ips: vec![istio_security::Address {
                            address: vec![10, 0, 0, 0],
                            length: 33,
                        }],
                        ..Default::default()
                    }],
                }],
            }],
            ..Default::default()
        };
        let res = Resource {
            name: "ns/p".into(),
            resource: Some(to_any(crate::AUTHORIZATION_TYPE_URL, &a)),
            ..Default::default()
        };
        let err = decode_resource(crate::AUTHORIZATION_TYPE_URL, &res).unwrap_err();
        assert_eq!(
            err.field,
            "authorization.rules[0].clauses[0].matches[0].source_ips[0].length"
        );
    }
}
