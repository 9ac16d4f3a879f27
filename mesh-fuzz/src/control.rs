//! The control plane's input side: Istio / Kubernetes YAML through the
//! directory source's parser and validation, and the resulting state
//! through every translation the control plane serves (workload and
//! authorization xDS for agents, Envoy LDS/RDS/CDS/EDS for waypoints).
use mesh_control::{
    source::{load_files, Snapshot, SourceConfig},
    translate::workload::{self, ConvertOptions},
};
use prost::Message;

use crate::xds;

/// The file name problems must carry.
const FILE: &str = "fuzz.yaml";

/// Input: the content of one configuration file (invalid UTF-8 is read
/// lossily: the directory source rejects such a file before parsing, so
/// the parser only ever sees text).
pub fn istio_yaml(data: &[u8]) {
    let _ = load(data);
}

fn load(data: &[u8]) -> Option<Snapshot> {
    let text = String::from_utf8_lossy(data).into_owned();
    match load_files(&[(FILE.to_string(), text)], &SourceConfig::default()) {
        Ok(snapshot) => Some(snapshot),
        Err(problems) => {
            // A rejection says where: at least one problem, each naming
            // the file it came from.
            assert!(!problems.is_empty(), "rejected without a problem");
            for p in &problems {
                assert_eq!(p.file, FILE, "{p}");
            }
            None
        }
    }
}

/// Input: like [`istio_yaml`]. A configuration the source accepts must
/// translate, and whatever the control plane would serve must pass the
/// consumers' own checks: agents' xDS decoding for workloads, services and
/// authorizations, the waypoint's translation for Envoy resources.
pub fn control_translate(data: &[u8]) {
    let Some(snapshot) = load(data) else {
        return;
    };
    let state = &snapshot.state;
    let opts = ConvertOptions::default();
    for (name, address) in workload::addresses(state, &opts) {
        xds::must_accept(mesh_xds::ADDRESS_TYPE_URL, &name, address.encode_to_vec());
    }
    for (name, authz) in workload::authorizations(state, &opts) {
        xds::must_accept(
            mesh_xds::AUTHORIZATION_TYPE_URL,
            &name,
            authz.encode_to_vec(),
        );
    }
    let envoy = mesh_control::translate::waypoint::translate(state, &opts.root_namespace);
    for (name, l) in &envoy.listeners {
        xds::must_accept(mesh_xds::LISTENER_TYPE_URL, name, l.encode_to_vec());
    }
    for (name, rc) in &envoy.routes {
        xds::must_accept(mesh_xds::ROUTE_TYPE_URL, name, rc.encode_to_vec());
    }
    for (name, c) in &envoy.clusters {
        xds::must_accept(mesh_xds::CLUSTER_TYPE_URL, name, c.encode_to_vec());
    }
    for (name, cla) in &envoy.endpoints {
        xds::must_accept(mesh_xds::ENDPOINT_TYPE_URL, name, cla.encode_to_vec());
    }
}
