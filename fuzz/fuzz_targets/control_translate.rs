//! libFuzzer entry of the `control_translate` target; the body is `mesh_fuzz::control::control_translate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::control::control_translate(data));
