//! libFuzzer entry of the `xds_decode` target; the body is `mesh_fuzz::xds::xds_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::xds::xds_decode(data));
