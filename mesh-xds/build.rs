//! Generates the prost messages and tonic client/server code from `proto/`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: &[&str] = &[
        "proto/envoy/config/core/v3/base.proto",
        "proto/google/rpc/status.proto",
        "proto/envoy/service/discovery/v3/discovery.proto",
        "proto/envoy/service/discovery/v3/ads.proto",
        "proto/istio/workload/workload.proto",
        "proto/istio/security/authorization.proto",
        "proto/istio/ca/ca.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(PROTOS, &["proto"])?;
    Ok(())
}
