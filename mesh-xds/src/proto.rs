//! Protobuf messages and gRPC stubs (client and server): Istio's, generated
//! from the `.proto` files in `mesh-xds/proto/` (see its README for what
//! each one follows upstream), and Envoy's discovery API from
//! `envoy-types`. The nested modules mirror the protobuf packages (the
//! generated code refers across packages by those paths); use the flat
//! aliases:
//!
//! | alias | protobuf package |
//! |---|---|
//! | [`envoy_discovery`] | `envoy.service.discovery.v3` (Delta ADS messages, client and server) |
//! | [`envoy_core`] | `envoy.config.core.v3` (`Node`) |
//! | [`google_rpc`] | `google.rpc` (`Status`) |
//! | [`wkt`] | `google.protobuf` (`Any`, `Struct`, …) |
//! | [`istio_workload`] | `istio.workload` (`Address`, `Workload`, `Service`, …) |
//! | [`istio_security`] | `istio.security` (`Authorization`, …) |
//! | [`istio_ca`] | `istio.v1.auth` (`IstioCertificateService`, client and server) |
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `envoy.config.cluster.v3` (CDS).
pub use envoy_types::pb::envoy::config::cluster::v3 as envoy_cluster;
pub use envoy_types::pb::envoy::config::core::v3 as envoy_core;
/// `envoy.config.endpoint.v3` (EDS).
pub use envoy_types::pb::envoy::config::endpoint::v3 as envoy_endpoint;
/// `envoy.config.listener.v3` (LDS).
pub use envoy_types::pb::envoy::config::listener::v3 as envoy_listener;
/// `envoy.config.route.v3` (RDS).
pub use envoy_types::pb::envoy::config::route::v3 as envoy_route;
pub use envoy_types::pb::envoy::service::discovery::v3 as envoy_discovery;
/// Protobuf well-known types (`Any`, `Struct`, `Value`, …), as
/// `envoy-types` generates them; Istio's messages use the same ones.
pub use envoy_types::pb::google::protobuf as wkt;
pub use envoy_types::pb::google::rpc as google_rpc;
pub use istio::security as istio_security;
pub use istio::v1::auth as istio_ca;
pub use istio::workload as istio_workload;

pub mod istio {
    pub mod workload {
        tonic::include_proto!("istio.workload");
    }
    pub mod security {
        tonic::include_proto!("istio.security");
    }
    pub mod v1 {
        pub mod auth {
            tonic::include_proto!("istio.v1.auth");
        }
    }
}

/// Wraps a message into a `google.protobuf.Any` with its
/// `type.googleapis.com/<package>.<Message>` type URL.
pub fn to_any<M: prost::Message>(type_url: &str, msg: &M) -> wkt::Any {
    wkt::Any {
        type_url: type_url.to_string(),
        value: msg.encode_to_vec(),
    }
}
