//! libFuzzer entry of the `route_match` target; the body is `mesh_fuzz::route_match::route_match`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mesh_fuzz::route_match::route_match(data));
