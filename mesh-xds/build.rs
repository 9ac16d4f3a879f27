//! Generates the prost messages and tonic client/server code for Istio's
//! protos in `proto/`. Envoy's discovery API and the protobuf well-known
//! types come pre-generated from `envoy-types`, so Istio's messages refer
//! to those (`extern_path`) and one `Any`/`Struct` type serves both.
//!
//! The `.proto` files are compiled by `protox` (pure Rust, with the
//! well-known types built in), not by a system `protoc`: the build needs
//! nothing outside Cargo (ARCHITECTURE.md, "Protobuf without `protoc`").
fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: &[&str] = &[
        "proto/istio/workload/workload.proto",
        "proto/istio/security/authorization.proto",
        "proto/istio/ca/ca.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    // What prost-build asks of protoc: every import in the set, and source
    // info so the generated code keeps the protos' comments.
    let fds = protox::Compiler::new(["proto"])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)?
        .file_descriptor_set();
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // Without this, prost maps .google.protobuf to prost_types itself.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::envoy_types::pb::google::protobuf")
        .compile_fds(fds)?;
    Ok(())
}
