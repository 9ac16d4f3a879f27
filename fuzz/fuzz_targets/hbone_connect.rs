//! libFuzzer entry of the `hbone_connect` target; the body is `mesh_fuzz::hbone::hbone_connect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::hbone::hbone_connect(data));
