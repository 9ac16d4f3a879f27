//! libFuzzer entry of the `forwarded_header` target; the body is `mesh_fuzz::hbone::forwarded_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::hbone::forwarded_header(data));
