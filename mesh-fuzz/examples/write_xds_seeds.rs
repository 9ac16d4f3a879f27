//! Writes the `xds_decode` seed corpus (`fuzz/corpus/xds_decode/`): every
//! resource the control plane serves for the route_match fixture and for
//! mesh-control's test mesh, encoded as the target reads its input.
//! Run once after the translation changes:
//! `cargo run -p mesh-fuzz --example write_xds_seeds`.
use std::{fs, path::PathBuf};

use mesh_control::{
    source::{load_directory, load_files, SourceConfig},
    translate::workload::{self, ConvertOptions},
};
use mesh_fuzz::xds::encode_input;
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("fuzz/corpus/xds_decode");
    fs::create_dir_all(&out)?;
    let config = SourceConfig::default();
    let states = [
        load_files(
            &[("mesh.yaml".into(), mesh_fuzz::route_match::MESH_YAML.into())],
            &config,
        )
        .expect("fixture loads")
        .state,
        load_directory(&root.join("mesh-control/tests/data/mesh"), &config)
            .expect("test mesh loads")
            .state,
    ];
    let mut inputs = vec![];
    for state in &states {
        let opts = ConvertOptions::default();
        for (_, a) in workload::addresses(state, &opts) {
            inputs.push(encode_input(mesh_xds::ADDRESS_TYPE_URL, &a.encode_to_vec()));
        }
        for (_, a) in workload::authorizations(state, &opts) {
            inputs.push(encode_input(
                mesh_xds::AUTHORIZATION_TYPE_URL,
                &a.encode_to_vec(),
            ));
        }
        let envoy = mesh_control::translate::waypoint::translate(state, &opts.root_namespace);
        for l in envoy.listeners.values() {
            inputs.push(encode_input(
                mesh_xds::LISTENER_TYPE_URL,
                &l.encode_to_vec(),
            ));
        }
        for r in envoy.routes.values() {
            inputs.push(encode_input(mesh_xds::ROUTE_TYPE_URL, &r.encode_to_vec()));
        }
        for c in envoy.clusters.values() {
            inputs.push(encode_input(mesh_xds::CLUSTER_TYPE_URL, &c.encode_to_vec()));
        }
        for e in envoy.endpoints.values() {
            inputs.push(encode_input(
                mesh_xds::ENDPOINT_TYPE_URL,
                &e.encode_to_vec(),
            ));
        }
    }
    for (i, input) in inputs.iter().enumerate() {
        fs::write(out.join(format!("control-{i:03}")), input)?;
    }
    println!("wrote {} seeds to {}", inputs.len(), out.display());
    Ok(())
}
