//! Tests of the upstream side against real peers: HBONE to a mesh
//! endpoint, HTTP to live servers, TLS origination and DNS for hosts
//! outside the mesh.
mod external;
mod hbone;
mod live;
