//! Helpers shared by the integration tests.
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::{
    core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
    endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
        LocalityLbEndpoints,
    },
};

/// A ClusterLoadAssignment of one healthy endpoint.
pub fn cla(cluster: &str, addr: SocketAddr) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: addr.ip().to_string(),
                            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                health_status: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}
