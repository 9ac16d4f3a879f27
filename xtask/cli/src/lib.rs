//! What `cargo xtask` and `mesh-lab` (the demo and the benchmarks,
//! `xtask/lab`) share on the command line: xtask parses the demo's and
//! benchmarks' options ([`lab_args`]) and answers `--help` before set-up
//! and the release build, then hands them to `mesh-lab` as the same flags;
//! both print progress and check for root the same way ([`console`]).
//!
//! A crate of its own because xtask cannot depend on `mesh-lab`: that
//! needs the workspace (the end-to-end harness, protobuf and eBPF builds),
//! while xtask must compile before set-up has installed anything. This
//! crate depends only on what xtask already does (clap, anyhow, nix).
pub mod console;
pub mod lab_args;
