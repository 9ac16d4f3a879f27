//! libFuzzer entry of the `trace_headers` target; the body is `mesh_fuzz::trace::trace_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::trace::trace_headers(data));
