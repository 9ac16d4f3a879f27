//! xDS resources as the agents and waypoints receive them: decoding and
//! validation in `mesh-xds`, then the waypoint's translation of Envoy
//! Listener / RouteConfiguration / Cluster / ClusterLoadAssignment and of
//! Istio workloads and services.
use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
    route::v3::RouteConfiguration,
};
use mesh_waypoint::upstream::{ServiceEntry, WorkloadEntry};
use mesh_xds::{
    client::decode_resource,
    proto::{envoy_discovery::Resource, wkt::Any},
    FieldRejection, XdsResource,
};
use prost::Message;

/// The resource types, indexed by the first input byte.
pub const TYPE_URLS: [&str; 6] = [
    mesh_xds::ADDRESS_TYPE_URL,
    mesh_xds::AUTHORIZATION_TYPE_URL,
    mesh_xds::LISTENER_TYPE_URL,
    mesh_xds::ROUTE_TYPE_URL,
    mesh_xds::CLUSTER_TYPE_URL,
    mesh_xds::ENDPOINT_TYPE_URL,
];

/// Input: one byte choosing the type ([`TYPE_URLS`], modulo), then the
/// encoded resource. The resource name is taken from the message itself
/// so that inputs get past the name check to the deeper validation.
pub fn xds_decode(data: &[u8]) {
    let Some((&kind, value)) = data.split_first() else {
        return;
    };
    let type_url = TYPE_URLS[usize::from(kind) % TYPE_URLS.len()];
    let name = inner_name(type_url, value).unwrap_or_else(|| "fuzz".into());
    if let Ok(resource) = decode(type_url, &name, value.to_vec()) {
        let _ = consume(type_url, &name, &resource);
    }
}

/// The input format of [`xds_decode`] for one resource: seeds are written
/// with it.
pub fn encode_input(type_url: &str, value: &[u8]) -> Vec<u8> {
    let kind = TYPE_URLS
        .iter()
        .position(|t| *t == type_url)
        .expect("known type URL");
    let mut out = vec![u8::try_from(kind).unwrap()];
    out.extend_from_slice(value);
    out
}

/// Panics unless `value` passes decoding, validation and the consumer's
/// translation: for resources the control plane itself produced.
pub fn must_accept(type_url: &str, name: &str, value: Vec<u8>) {
    let resource = decode(type_url, name, value)
        .unwrap_or_else(|e| panic!("control plane output NACKed by mesh-xds: {e}"));
    if let Err((field, reason)) = consume(type_url, name, &resource) {
        panic!(
            "control plane output {name:?} ({type_url}) refused by the waypoint: {field}: {reason}"
        );
    }
}

fn decode(
    type_url: &str,
    name: &str,
    value: Vec<u8>,
) -> Result<XdsResource, mesh_xds::client::InvalidResource> {
    let res = Resource {
        name: name.to_string(),
        resource: Some(Any {
            type_url: type_url.to_string(),
            value,
        }),
        ..Default::default()
    };
    decode_resource(type_url, &res)
}

/// What the consumers do with an accepted resource.
fn consume(type_url: &str, name: &str, r: &XdsResource) -> Result<(), FieldRejection> {
    mesh_waypoint::config::validate(type_url, r)?;
    mesh_waypoint::upstream::validate(type_url, r)?;
    match r {
        XdsResource::Workload(w) => {
            let _ = WorkloadEntry::from_proto(name, w);
        }
        XdsResource::Service(s) => {
            let _ = ServiceEntry::from_proto(s);
        }
        _ => {}
    }
    Ok(())
}

fn inner_name(type_url: &str, value: &[u8]) -> Option<String> {
    let name = match type_url {
        mesh_xds::LISTENER_TYPE_URL => Listener::decode(value).ok()?.name,
        mesh_xds::ROUTE_TYPE_URL => RouteConfiguration::decode(value).ok()?.name,
        mesh_xds::CLUSTER_TYPE_URL => Cluster::decode(value).ok()?.name,
        mesh_xds::ENDPOINT_TYPE_URL => ClusterLoadAssignment::decode(value).ok()?.cluster_name,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}
