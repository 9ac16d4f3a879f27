//! Hop ④: traffic arriving at this node for its pods.
pub mod hbone;
