//! libFuzzer entry of the `istio_yaml` target; the body is `mesh_fuzz::control::istio_yaml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::control::istio_yaml(data));
