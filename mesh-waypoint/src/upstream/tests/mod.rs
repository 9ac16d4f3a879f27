//! Tests of the upstream side against real peers: HBONE to a mesh
//! endpoint, and HTTP to live servers.
mod hbone;
mod live;
