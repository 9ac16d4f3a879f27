//! Hop ④: traffic arriving at this node for its pods — HBONE tunnels from
//! peers (hbone.rs), received on each pod's own listener (pods.rs) or the
//! node listener, and same-node delivery the outbound proxy hands over
//! (local.rs); both authorize with crate::policy.
pub mod hbone;
pub mod local;
pub mod pods;
