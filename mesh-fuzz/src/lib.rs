//! The bodies of the fuzz targets: one `pub fn <target>(data: &[u8])` per
//! parser that reads untrusted bytes or configuration, each a thin wrapper
//! over the real crate's pure function plus the invariants it promises.
//! A target panics only on a bug (a crash of the code under test or a
//! broken invariant); any input, however malformed, must return.
//!
//! Two callers: the libFuzzer binaries in `fuzz/fuzz_targets/` (run by
//! `cargo xtask fuzz`, nightly + cargo-fuzz), and `tests/corpus_replay.rs`,
//! which replays every file of `fuzz/corpus/` through every target on
//! stable as part of the normal test run.
#![forbid(unsafe_code)]

pub mod cni;
pub mod control;
pub mod hbone;
pub mod lines;
pub mod route_match;
pub mod trace;
pub mod xds;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` binary
/// and its `fuzz/corpus/<name>/` directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("istio_yaml", control::istio_yaml),
    ("control_translate", control::control_translate),
    ("xds_decode", xds::xds_decode),
    ("route_match", route_match::route_match),
    ("cni_api", cni::cni_api),
    ("forwarded_header", hbone::forwarded_header),
    ("hbone_connect", hbone::hbone_connect),
    ("trace_headers", trace::trace_headers),
];

/// Looks a target up by name.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
