//! `GET /config_dump`: what the control plane serves, three ways —
//! the [`MeshState`] (workloads, services, nodes, waypoints, peer
//! authentications),
//! the xDS resources as the ADS server sends them (same build, same
//! versions; the waypoints' Envoy resources summarised by
//! [`envoy_json`]), and under `"resources"` the raw Istio documents the source
//! holds, each the original document as JSON (`apiVersion`, `kind`,
//! `metadata`, `spec`, …). `meshctl analyze` consumes that last list.
use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
    route::v3::RouteConfiguration,
};
use mesh_xds::{
    proto::{istio_security::Authorization, istio_workload::Address},
    ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use prost::Message as _;
use serde_json::{json, Value};

use super::{envoy_json, xds_json, AdminState};
use crate::{
    model::{MeshState, MtlsMode},
    serve::resources::{Resources, VersionedResource},
    source::RawResource,
};

/// A YAML value as JSON. Non-string mapping keys (`80:`) become their
/// text and tags are dropped, so any accepted document converts.
pub fn yaml_to_json(value: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                n.as_f64().map_or(Value::Null, |f| json!(f))
            }
        }
        Y::String(s) => json!(s),
        Y::Sequence(items) => items.iter().map(yaml_to_json).collect(),
        Y::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .map(|s| s.trim_end().to_string())
                            .unwrap_or_default(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(&tagged.value),
    }
}

fn mode(m: MtlsMode) -> &'static str {
    match m {
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Strict => "STRICT",
        MtlsMode::Disable => "DISABLE",
    }
}

/// The mesh state's parts, keyed as in `MeshState`.
pub fn mesh_json(state: &MeshState) -> serde_json::Map<String, Value> {
    let workloads: Vec<Value> = state
        .workloads
        .values()
        .map(|w| {
            json!({
                "uid": w.uid,
                "name": w.name,
                "namespace": w.namespace,
                "service_account": w.service_account,
                "identity": format!(
                    "spiffe://{}/ns/{}/sa/{}",
                    state.trust_domain, w.namespace, w.service_account
                ),
                "ips": w.ips,
                "node": w.node,
                "labels": w.labels,
                "mesh": w.mesh,
                "services": w.services,
            })
        })
        .collect();
    let services: Vec<Value> = state
        .services
        .iter()
        .map(|(key, s)| {
            json!({
                "key": key,
                "name": s.name,
                "namespace": s.namespace,
                "hostname": s.hostname,
                "vips": s.vips,
                "ports": s.ports,
                "waypoint": s.waypoint.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let waypoints: Vec<Value> = state
        .waypoints
        .values()
        .map(|wp| {
            let r = wp.reference();
            let services: Vec<&str> = state
                .services
                .values()
                .filter(|s| s.waypoint.as_ref() == Some(&r))
                .map(|s| s.hostname.as_str())
                .collect();
            json!({
                "name": wp.name,
                "namespace": wp.namespace,
                "pods": wp.pods,
                "address": state.waypoint_address(wp).map(|(_, ip)| ip),
                "services": services,
                "listener": r.resource_name(),
            })
        })
        .collect();
    let nodes: Vec<Value> = state
        .nodes
        .values()
        .map(|n| json!({"name": n.name, "address": n.address}))
        .collect();
    let peer_authentications: Vec<Value> = state
        .peer_authentications
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "namespace": p.namespace,
                "selector": p.selector,
                "mode": mode(p.mode),
            })
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("trust_domain".into(), json!(state.trust_domain));
    out.insert("workloads".into(), json!(workloads));
    out.insert("services".into(), json!(services));
    out.insert("nodes".into(), json!(nodes));
    out.insert("waypoints".into(), json!(waypoints));
    out.insert("peer_authentications".into(), json!(peer_authentications));
    out
}

/// One served resource, decoded back for reading.
fn resource_json(type_url: &str, name: &str, r: &VersionedResource) -> Value {
    let body = match type_url {
        ADDRESS_TYPE_URL => Address::decode(r.any.value.as_slice())
            .map(|a| xds_json::address(&a))
            .map_err(|e| e.to_string()),
        AUTHORIZATION_TYPE_URL => Authorization::decode(r.any.value.as_slice())
            .map(|a| xds_json::authorization(&a))
            .map_err(|e| e.to_string()),
        LISTENER_TYPE_URL => Listener::decode(r.any.value.as_slice())
            .map(|l| envoy_json::listener(&l))
            .map_err(|e| e.to_string()),
        ROUTE_TYPE_URL => RouteConfiguration::decode(r.any.value.as_slice())
            .map(|rc| envoy_json::route_configuration(&rc))
            .map_err(|e| e.to_string()),
        CLUSTER_TYPE_URL => Cluster::decode(r.any.value.as_slice())
            .map(|c| envoy_json::cluster(&c))
            .map_err(|e| e.to_string()),
        ENDPOINT_TYPE_URL => ClusterLoadAssignment::decode(r.any.value.as_slice())
            .map(|c| envoy_json::endpoints(&c))
            .map_err(|e| e.to_string()),
        _ => Err(format!(
            "{} bytes, no JSON view of this type",
            r.any.value.len()
        )),
    };
    match body {
        Ok(resource) => json!({"name": name, "version": r.version, "resource": resource}),
        Err(error) => json!({"name": name, "version": r.version, "error": error}),
    }
}

/// The xDS resources per type URL, as `[{"name", "version", "resource"}]`.
pub fn xds_json(resources: &Resources) -> Value {
    let by_type: serde_json::Map<String, Value> = resources
        .by_type
        .iter()
        .map(|(type_url, named)| {
            let list: Vec<Value> = named
                .iter()
                .map(|(name, r)| resource_json(type_url, name, r))
                .collect();
            (type_url.clone(), json!(list))
        })
        .collect();
    Value::Object(by_type)
}

/// One raw document exactly as written (its file is in `"resource_files"`,
/// same order, so the documents stay untouched for the analyzer).
fn raw_json(r: &RawResource) -> Value {
    yaml_to_json(&r.value)
}

/// The whole `/config_dump` document.
pub fn config_dump(admin: &AdminState) -> Value {
    let state = admin.state.borrow().clone();
    let raw = admin.raw.borrow().clone();
    let server_version = admin.proxies.server_version();
    // Rebuilt with the server's own function and options: versions are
    // hashes of the encoding, so they equal what the streams were sent.
    let resources = Resources::build(&state, &admin.convert, server_version);
    let mut out = serde_json::Map::new();
    out.insert("server_version".into(), json!(server_version.to_string()));
    out.insert("last_error".into(), json!(*admin.last_error.borrow()));
    out.extend(mesh_json(&state));
    out.insert("xds".into(), xds_json(&resources));
    out.insert(
        "resource_files".into(),
        raw.iter()
            .map(|r| json!({"kind": r.kind, "namespace": r.namespace, "name": r.name, "file": r.file}))
            .collect(),
    );
    out.insert("resources".into(), raw.iter().map(raw_json).collect());
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_become_json() {
        let doc: serde_yaml::Value = serde_yaml::from_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {ports: ['80']}}]}]\n  weird: {80: x, true: y}\n  n: 1.5\n  t: !tag 3\n",
        )
        .unwrap();
        let j = yaml_to_json(&doc);
        assert_eq!(j["metadata"]["name"], "a");
        assert_eq!(
            j["spec"]["rules"][0]["to"][0]["operation"]["ports"][0],
            "80"
        );
        assert_eq!(j["spec"]["weird"]["80"], "x");
        assert_eq!(j["spec"]["weird"]["true"], "y");
        assert_eq!(j["spec"]["n"], 1.5);
        assert_eq!(j["spec"]["t"], 3);
    }
}
