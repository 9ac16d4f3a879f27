//! `GET /config_dump`: what the agent received from the control plane and
//! acts on — workloads, services with endpoints, authorization policies —
//! and the certificates it holds (metadata only: never key material).
//! Shape: `docs/contracts/agent-admin.md`.
//!
//! Policies are rendered from the `istio.security.Authorization` messages
//! by hand (prost types have no serde); field names are the proto's
//! (snake_case), empty fields are left out as in protobuf's JSON mapping.
use std::{net::IpAddr, sync::Arc, time::UNIX_EPOCH};

use mesh_hbone::WorkloadCert;
use mesh_xds::proto::{
    istio_security::{
        string_match::MatchType, Address, Authorization, Match, ServiceAccountMatch, StringMatch,
    },
    istio_workload::{AppProtocol, Extension},
};
use serde_json::{json, Map, Value};

use crate::state::{
    details::{ServiceDetails, Waypoint, WorkloadDetails},
    view::MeshView,
};

/// The xDS connection as `config_dump` shows it.
pub struct XdsStatus<'a> {
    pub address: &'a str,
    pub connected: bool,
    pub last_error: Option<&'a str>,
    /// Unix ms of the last applied change, 0 if none yet.
    pub last_update_unix_ms: u64,
}

pub fn config_dump<'a>(
    view: &MeshView,
    xds: &XdsStatus<'_>,
    policies: impl Iterator<Item = &'a Authorization>,
    certs: &[Arc<WorkloadCert>],
) -> Value {
    let mut workloads: Vec<Value> = view
        .workloads()
        .map(|w| {
            json!({
                "uid": w.uid, "name": w.name, "namespace": w.namespace,
                "service_account": w.service_account, "identity": w.identity.to_string(),
                "node": w.node, "ips": w.ips, "mesh": w.mesh,
                "workload_name": w.workload_name,
                "canonical_name": w.canonical_name,
                "canonical_revision": w.canonical_revision,
                "authorization_policies": w.authorization_policies,
                "probe_ports": w.probe_ports,
                "waypoint": w.waypoint.as_ref().map(waypoint),
                "details": workload_details(&w.details),
            })
        })
        .collect();
    workloads.sort_by(|a, b| a["uid"].as_str().cmp(&b["uid"].as_str()));
    let mut services: Vec<(String, String, Value)> = view
        .services()
        .map(|s| {
            let endpoints: Vec<Value> = s
                .endpoints
                .iter()
                .map(|(uid, port)| json!({"uid": uid, "port": port}))
                .collect();
            let value = json!({
                "key": s.key, "vip": s.vip.to_string(), "endpoints": endpoints,
                "waypoint": s.details.waypoint.as_ref().map(waypoint),
                "app_protocol": app_protocol_name(s.app_protocol),
                "details": service_details(&s.details),
            });
            (s.key.clone(), s.vip.to_string(), value)
        })
        .collect();
    services.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut policies: Vec<Value> = policies.map(policy).collect();
    policies.sort_by(|a, b| {
        (a["namespace"].as_str(), a["name"].as_str())
            .cmp(&(b["namespace"].as_str(), b["name"].as_str()))
    });
    let certificates: Vec<Value> = certs.iter().map(|c| certificate(c)).collect();
    json!({
        "node": view.node,
        "xds": {
            "address": xds.address,
            "connected": xds.connected,
            "last_error": xds.last_error,
            "last_update_unix_ms": xds.last_update_unix_ms,
        },
        "skipped": {"addresses_of_unknown_kind": view.skipped_addresses},
        "workloads": workloads,
        "services": services.into_iter().map(|s| s.2).collect::<Vec<_>>(),
        "policies": policies,
        "certificates": certificates,
    })
}

/// A waypoint as the control plane named it and where routing sends its
/// traffic (`null`: a hostname that resolved to nothing; refused).
fn waypoint(w: &Waypoint) -> Value {
    json!({"name": w.name.to_string(), "resolved": w.resolved.map(|a| a.to_string())})
}

/// Istio's `AppProtocol` by name; an unknown number as the number.
fn app_protocol_name(p: i32) -> String {
    AppProtocol::try_from(p).map_or_else(|_| p.to_string(), |p| p.as_str_name().to_string())
}

fn workload_details(d: &WorkloadDetails) -> Value {
    json!({
        "unhealthy": d.unhealthy,
        "host_network": d.host_network,
        "network": d.network,
        "tunnel_protocol": d.tunnel_protocol,
        "workload_type": d.workload_type,
        "locality": d.locality.as_ref().map(|l| json!({
            "region": l.region, "zone": l.zone, "subzone": l.subzone,
        })),
        "capacity": d.capacity,
        "native_tunnel": d.native_tunnel,
        "application_tunnel": d.application_tunnel.map(|(protocol, port)| json!({
            "protocol": protocol, "port": port,
        })),
        "extensions": d.extensions,
    })
}

fn service_details(d: &ServiceDetails) -> Value {
    json!({
        "load_balancing": d.load_balancing.as_ref().map(|lb| json!({
            "routing_preference": lb.routing_preference,
            "mode": lb.mode,
            "health_policy": lb.health_policy,
        })),
        "ip_families": d.ip_families,
        "extensions": d.extensions,
        "canonical": d.canonical,
        "ingress_use_waypoint": d.ingress_use_waypoint,
        "weighted_waypoints": d.weighted_waypoints.iter()
            .map(|(name, weight)| json!({"name": name, "weight": weight}))
            .collect::<Vec<_>>(),
        "visibility": d.visibility,
        "subject_alt_names": d.subject_alt_names,
        "address_ranges": d.address_ranges,
    })
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Identity, serial and validity: nothing that could sign.
fn certificate(c: &WorkloadCert) -> Value {
    json!({
        "identity": c.identity().to_string(),
        "serial": c.serial(),
        "not_before_unix": unix(c.not_before()),
        "not_after_unix": unix(c.not_after()),
    })
}

fn scope_name(scope: i32) -> String {
    match scope {
        0 => "GLOBAL".into(),
        1 => "NAMESPACE".into(),
        2 => "WORKLOAD_SELECTOR".into(),
        other => other.to_string(),
    }
}

/// AUDIT (2) is our extension of the enum (see the interface doc); an
/// unknown number is shown as the number rather than guessed.
fn action_name(action: i32) -> String {
    match action {
        0 => "ALLOW".into(),
        1 => "DENY".into(),
        2 => "AUDIT".into(),
        other => other.to_string(),
    }
}

fn policy(p: &Authorization) -> Value {
    let rules: Vec<Value> = p
        .rules
        .iter()
        .map(|r| {
            let clauses: Vec<Value> = r
                .clauses
                .iter()
                .map(|c| json!({"matches": c.matches.iter().map(match_json).collect::<Vec<_>>()}))
                .collect();
            json!({"clauses": clauses})
        })
        .collect();
    let mut out = json!({
        "name": p.name,
        "namespace": p.namespace,
        "scope": scope_name(p.scope),
        "action": action_name(p.action),
        "dry_run": p.dry_run,
        "rules": rules,
    });
    if !p.extensions.is_empty() {
        out["extensions"] = extension_names(&p.extensions);
    }
    out
}

fn string_match(m: &StringMatch) -> Value {
    match &m.match_type {
        Some(MatchType::Exact(s)) => json!({"exact": s}),
        Some(MatchType::Prefix(s)) => json!({"prefix": s}),
        Some(MatchType::Suffix(s)) => json!({"suffix": s}),
        Some(MatchType::Presence(_)) => json!({"presence": {}}),
        None => json!({}),
    }
}

/// `10.0.0.0/8`; bytes that are not an address are shown as hex.
fn address(a: &Address) -> Value {
    let ip = match a.address.len() {
        4 => <[u8; 4]>::try_from(&a.address[..]).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(&a.address[..]).ok().map(IpAddr::from),
        _ => None,
    };
    match ip {
        Some(ip) => json!(format!("{ip}/{}", a.length)),
        None => {
            let hex: String = a.address.iter().map(|b| format!("{b:02x}")).collect();
            json!(format!("0x{hex}/{}", a.length))
        }
    }
}

fn match_json(m: &Match) -> Value {
    let mut out = Map::new();
    let mut strings = |key: &str, list: &[StringMatch]| {
        if !list.is_empty() {
            out.insert(key.into(), list.iter().map(string_match).collect());
        }
    };
    strings("namespaces", &m.namespaces);
    strings("not_namespaces", &m.not_namespaces);
    strings("principals", &m.principals);
    strings("not_principals", &m.not_principals);
    let mut addresses = |key: &str, list: &[Address]| {
        if !list.is_empty() {
            out.insert(key.into(), list.iter().map(address).collect());
        }
    };
    addresses("source_ips", &m.source_ips);
    addresses("not_source_ips", &m.not_source_ips);
    addresses("destination_ips", &m.destination_ips);
    addresses("not_destination_ips", &m.not_destination_ips);
    if !m.destination_ports.is_empty() {
        out.insert("destination_ports".into(), json!(m.destination_ports));
    }
    if !m.not_destination_ports.is_empty() {
        out.insert(
            "not_destination_ports".into(),
            json!(m.not_destination_ports),
        );
    }
    let accounts = |list: &[ServiceAccountMatch]| -> Value {
        list.iter()
            .map(|sa| json!({"namespace": sa.namespace, "service_account": sa.service_account}))
            .collect()
    };
    if !m.service_accounts.is_empty() {
        out.insert("service_accounts".into(), accounts(&m.service_accounts));
    }
    if !m.not_service_accounts.is_empty() {
        out.insert(
            "not_service_accounts".into(),
            accounts(&m.not_service_accounts),
        );
    }
    // Conditions the agent cannot evaluate (their match fails closed).
    if !m.extensions.is_empty() {
        out.insert("extensions".into(), extension_names(&m.extensions));
    }
    Value::Object(out)
}

fn extension_names(list: &[Extension]) -> Value {
    list.iter().map(|e| json!(e.name)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use mesh_xds::proto::istio_security::{Clause, Rule};

    use super::*;
    use crate::state::fixtures::view;

    /// A self-signed workload certificate for `spiffe://cluster.local/ns/default/sa/{sa}`.
    pub(crate) fn cert(sa: &str) -> Arc<WorkloadCert> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        let uri = format!("spiffe://cluster.local/ns/default/sa/{sa}");
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        let cert = params.self_signed(&key).unwrap();
        Arc::new(WorkloadCert::from_pem(cert.pem(), key.serialize_pem()).unwrap())
    }

    pub(crate) fn deny_policy() -> Authorization {
        let exact = |s: &str| StringMatch {
            match_type: Some(MatchType::Exact(s.into())),
        };
        Authorization {
            name: "deny-legacy".into(),
            namespace: "default".into(),
            scope: 1,
            action: 1,
            dry_run: false,
            rules: vec![Rule {
                clauses: vec![
                    Clause {
                        matches: vec![Match {
                            principals: vec![exact("cluster.local/ns/legacy/sa/old")],
                            source_ips: vec![Address {
                                address: vec![10, 1, 0, 0],
                                length: 16,
                            }],
                            ..Match::default()
                        }],
                    },
                    Clause {
                        matches: vec![Match {
                            destination_ports: vec![8080],
                            ..Match::default()
                        }],
                    },
                ],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn shape_follows_the_contract_and_holds_no_key_material() {
        let certs = vec![cert("a")];
        let policy = deny_policy();
        let xds = XdsStatus {
            address: "http://10.0.0.254:15010",
            connected: true,
            last_error: None,
            last_update_unix_ms: 1,
        };
        let dump = config_dump(&view(), &xds, std::iter::once(&policy), &certs);
        let text = dump.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
        assert_eq!(dump["node"], "n1");
        assert_eq!(dump["xds"]["connected"], true);
        assert_eq!(dump["xds"]["address"], "http://10.0.0.254:15010");
        let w = &dump["workloads"][0];
        assert_eq!(w["uid"], "Kubernetes//Pod/default/a");
        for key in [
            "name",
            "namespace",
            "service_account",
            "identity",
            "node",
            "ips",
            "mesh",
            "canonical_name",
            "canonical_revision",
            "authorization_policies",
            "probe_ports",
        ] {
            assert!(!w[key].is_null(), "workload lacks {key}: {w}");
        }
        assert_eq!(w["ips"][0], "10.244.1.2");
        let s = &dump["services"][0];
        assert_eq!(s["key"], "default/svc.default.svc.cluster.local");
        assert_eq!(s["vip"], "10.96.0.10:80");
        assert_eq!(s["endpoints"][0]["port"], 8080);
        let p = &dump["policies"][0];
        assert_eq!(
            (&p["name"], &p["namespace"], &p["scope"], &p["action"]),
            (
                &json!("deny-legacy"),
                &json!("default"),
                &json!("NAMESPACE"),
                &json!("DENY")
            )
        );
        assert_eq!(p["dry_run"], false);
        let first = &p["rules"][0]["clauses"][0]["matches"][0];
        assert_eq!(
            first["principals"][0]["exact"],
            "cluster.local/ns/legacy/sa/old"
        );
        assert_eq!(first["source_ips"][0], "10.1.0.0/16");
        assert!(first.get("not_principals").is_none(), "{first}");
        assert_eq!(
            p["rules"][0]["clauses"][1]["matches"][0]["destination_ports"][0],
            8080
        );
        let c = &dump["certificates"][0];
        assert_eq!(c["identity"], "spiffe://cluster.local/ns/default/sa/a");
        assert!(c["not_after_unix"].as_u64().unwrap() > c["not_before_unix"].as_u64().unwrap());
        assert!(c["serial"].is_string());
    }
}
