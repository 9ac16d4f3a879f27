//! The served xDS resources as JSON, for `/config_dump`. Hand-written
//! (the generated prost types have no serde): field names are the proto
//! field names, enums their proto names, addresses printed as IPs, so the
//! dump reads like istiod's and ztunnel's.
use std::net::IpAddr;

use mesh_xds::proto::istio_security::{
    string_match::MatchType, Action, Address as IpBlock, Authorization, Match, Scope, StringMatch,
};
use mesh_xds::proto::istio_workload::{
    address, gateway_address, Address, GatewayAddress, NetworkAddress, Port, Service,
    TunnelProtocol, Workload, WorkloadStatus, WorkloadType,
};
use serde_json::{json, Value};

/// 4 or 16 bytes as an IP; anything else as hex, so a bad resource still shows.
pub fn ip_of(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes")).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")).to_string(),
        _ => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn enum_name<E>(value: i32, name: impl Fn(&E) -> &'static str) -> Value
where
    E: TryFrom<i32>,
{
    match E::try_from(value) {
        Ok(e) => json!(name(&e)),
        Err(_) => json!(value),
    }
}

fn network_address(a: &NetworkAddress) -> Value {
    json!({"network": a.network, "address": ip_of(&a.address)})
}

fn gateway(g: &Option<GatewayAddress>) -> Value {
    let Some(g) = g else { return Value::Null };
    let destination = match &g.destination {
        Some(gateway_address::Destination::Address(a)) => json!({"address": network_address(a)}),
        Some(gateway_address::Destination::Hostname(h)) => {
            json!({"hostname": {"namespace": h.namespace, "hostname": h.hostname}})
        }
        None => Value::Null,
    };
    json!({"destination": destination, "hbone_mtls_port": g.hbone_mtls_port})
}

fn ports(ports: &[Port]) -> Value {
    ports
        .iter()
        .map(|p| json!({"service_port": p.service_port, "target_port": p.target_port}))
        .collect()
}

fn workload(w: &Workload) -> Value {
    let services: serde_json::Map<String, Value> = w
        .services
        .iter()
        .map(|(k, v)| (k.clone(), json!({"ports": ports(&v.ports)})))
        .collect();
    json!({
        "uid": w.uid,
        "name": w.name,
        "namespace": w.namespace,
        "addresses": w.addresses.iter().map(|a| ip_of(a)).collect::<Vec<_>>(),
        "hostname": w.hostname,
        "network": w.network,
        "tunnel_protocol": enum_name(w.tunnel_protocol, TunnelProtocol::as_str_name),
        "trust_domain": w.trust_domain,
        "service_account": w.service_account,
        "waypoint": gateway(&w.waypoint),
        "network_gateway": gateway(&w.network_gateway),
        "node": w.node,
        "canonical_name": w.canonical_name,
        "canonical_revision": w.canonical_revision,
        "workload_type": enum_name(w.workload_type, WorkloadType::as_str_name),
        "workload_name": w.workload_name,
        "services": services,
        "authorization_policies": w.authorization_policies,
        "status": enum_name(w.status, WorkloadStatus::as_str_name),
        "cluster_id": w.cluster_id,
        "probe_ports": w.probe_ports,
    })
}

fn service(s: &Service) -> Value {
    json!({
        "name": s.name,
        "namespace": s.namespace,
        "hostname": s.hostname,
        "addresses": s.addresses.iter().map(network_address).collect::<Vec<_>>(),
        "ports": ports(&s.ports),
        "subject_alt_names": s.subject_alt_names,
        "waypoint": gateway(&s.waypoint),
        "export_to": s.export_to,
        "passthrough": s.passthrough,
    })
}

/// `istio.workload.Address`: `{"workload": {...}}` or `{"service": {...}}`.
pub fn address(a: &Address) -> Value {
    match &a.r#type {
        Some(address::Type::Workload(w)) => json!({"workload": workload(w)}),
        Some(address::Type::Service(s)) => json!({"service": service(s)}),
        None => json!({}),
    }
}

fn string_matches(list: &[StringMatch]) -> Value {
    list.iter()
        .map(|m| match &m.match_type {
            Some(MatchType::Exact(v)) => json!({"exact": v}),
            Some(MatchType::Prefix(v)) => json!({"prefix": v}),
            Some(MatchType::Suffix(v)) => json!({"suffix": v}),
            Some(MatchType::Presence(mesh_xds::proto::wkt::Empty {})) => json!({"presence": {}}),
            None => json!({}),
        })
        .collect()
}

fn ip_blocks(list: &[IpBlock]) -> Value {
    list.iter()
        .map(|a| json!(format!("{}/{}", ip_of(&a.address), a.length)))
        .collect()
}

/// One Match, with empty fields left out (as protobuf's JSON mapping does).
fn match_json(m: &Match) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, value: Value, empty: bool| {
        if !empty {
            out.insert(key.into(), value);
        }
    };
    put(
        "namespaces",
        string_matches(&m.namespaces),
        m.namespaces.is_empty(),
    );
    put(
        "not_namespaces",
        string_matches(&m.not_namespaces),
        m.not_namespaces.is_empty(),
    );
    put(
        "principals",
        string_matches(&m.principals),
        m.principals.is_empty(),
    );
    put(
        "not_principals",
        string_matches(&m.not_principals),
        m.not_principals.is_empty(),
    );
    put(
        "source_ips",
        ip_blocks(&m.source_ips),
        m.source_ips.is_empty(),
    );
    put(
        "not_source_ips",
        ip_blocks(&m.not_source_ips),
        m.not_source_ips.is_empty(),
    );
    put(
        "destination_ips",
        ip_blocks(&m.destination_ips),
        m.destination_ips.is_empty(),
    );
    put(
        "not_destination_ips",
        ip_blocks(&m.not_destination_ips),
        m.not_destination_ips.is_empty(),
    );
    put(
        "destination_ports",
        json!(m.destination_ports),
        m.destination_ports.is_empty(),
    );
    put(
        "not_destination_ports",
        json!(m.not_destination_ports),
        m.not_destination_ports.is_empty(),
    );
    Value::Object(out)
}

/// The rules of a policy: `[{"clauses": [{"matches": [...]}]}]`.
pub fn rules(a: &Authorization) -> Value {
    a.rules
        .iter()
        .map(|r| {
            let clauses: Vec<Value> = r
                .clauses
                .iter()
                .map(|c| json!({"matches": c.matches.iter().map(match_json).collect::<Vec<_>>()}))
                .collect();
            json!({"clauses": clauses})
        })
        .collect()
}

/// `istio.security.Authorization`.
pub fn authorization(a: &Authorization) -> Value {
    json!({
        "name": a.name,
        "namespace": a.namespace,
        "scope": enum_name(a.scope, Scope::as_str_name),
        "action": enum_name(a.action, Action::as_str_name),
        "rules": rules(a),
        "dry_run": a.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::workload::static_strict_policy;

    #[test]
    fn strict_policy_and_addresses() {
        let p = authorization(&static_strict_policy("istio-system"));
        assert_eq!(
            p,
            json!({
                "name": "istio_converted_static_strict", "namespace": "istio-system",
                "scope": "WORKLOAD_SELECTOR", "action": "DENY", "dry_run": false,
                "rules": [{"clauses": [{"matches": [{"not_principals": [{"presence": {}}]}]}]}],
            })
        );
        assert_eq!(ip_of(&[10, 0, 0, 1]), "10.0.0.1");
        assert_eq!(ip_of(&[0; 16]), "::");
        assert_eq!(ip_of(&[1, 2]), "0x0102");
        let w = Workload {
            uid: "u".into(),
            addresses: vec![vec![10, 244, 1, 2]],
            tunnel_protocol: TunnelProtocol::Hbone as i32,
            workload_type: 99,
            ..Default::default()
        };
        let j = address(&Address {
            r#type: Some(address::Type::Workload(w)),
        });
        assert_eq!(j["workload"]["addresses"], json!(["10.244.1.2"]));
        assert_eq!(j["workload"]["tunnel_protocol"], "HBONE");
        assert_eq!(
            j["workload"]["workload_type"], 99,
            "unknown enum values stay numbers"
        );
        assert_eq!(j["workload"]["network_gateway"], Value::Null);
    }
}
