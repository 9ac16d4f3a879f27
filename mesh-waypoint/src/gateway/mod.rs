//! `--role gateway`: the waypoint's L7 engine behind the listeners the
//! control plane declares (docs/contracts/gateway-xds.md) instead of the
//! fixed HBONE and plain listeners. Every LDS Listener's address is bound
//! ([`listeners`]); its filter chains ([`chains`]) serve plain HTTP/1.1
//! and h2c, or terminate TLS with the certificate the ClientHello's SNI
//! selects ([`tls`]), and hand each request to the route stack of the
//! chain's RouteConfiguration.
pub mod chains;
pub mod listeners;
pub mod tls;

pub use listeners::ListenerManager;
