//! libFuzzer entry of the `cni_api` target; the body is `mesh_fuzz::cni::cni_api`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::cni::cni_api(data));
