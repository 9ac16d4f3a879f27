//! The outbound side of the data path, for connections the kernel
//! redirected from pods of this node (hop ①, crate::capture):
//! - listener.rs: the capture listener (port 15001) and the original
//!   destination;
//! - proxy.rs: routing (hop ②, crate::route) and the connection's life in
//!   the stats;
//! - direct.rs + relay.rs: plain TCP (passthrough, same-node delivery);
//! - hbone.rs: hop ③, HBONE to the destination's node or waypoint
//!   (mesh-hbone's `Counted` counts its bytes while open);
//! - kernel_carried.rs: same-node pairs the kernel carries once authorized
//!   (the fast path), reported by sock_ops and accounted here.
pub mod direct;
pub mod hbone;
pub mod kernel_carried;
pub mod listener;
pub mod proxy;
pub mod relay;

#[cfg(test)]
mod tests;
