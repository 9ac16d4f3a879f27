//! `--role gateway`: the waypoint's L7 engine behind the listeners the
//! control plane declares (docs/contracts/gateway-xds.md) instead of the
//! fixed HBONE and plain listeners. Every LDS Listener's address is bound
//! ([`listeners`]); its filter chains ([`spec`], [`chains`]) serve plain
//! HTTP/1.1 and h2c, terminate TLS with the certificate the ClientHello's
//! SNI selects ([`sni`], [`tls`]) and hand each request to the route
//! stack of the chain's RouteConfiguration, or relay the bytes with
//! `tcp_proxy` ([`tcp`], [`relay`]): plain TCP, TLS terminated, or TLS
//! passed through untouched, each connection reported to telemetry
//! (Istio's TCP metrics, the access log). A client certificate verified by
//! a `MUTUAL` chain names the downstream principal ([`peer`]).
pub mod chains;
pub mod listeners;
pub mod peer;
pub mod relay;
pub mod rewind;
pub mod sni;
pub mod spec;
pub mod tcp;
pub mod tls;

pub use listeners::ListenerManager;
