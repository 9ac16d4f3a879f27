//! The part of xtask other crates use: where set-up installs the
//! third-party tools and which versions ([`pins`]). The end-to-end harness
//! (`mesh-e2e`) depends on this library so it looks for exactly what
//! `cargo xtask setup` installed.
pub mod pins;
