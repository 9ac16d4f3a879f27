//! The waypoint's Listener: `0.0.0.0:15080`, one filter chain with the
//! HTTP connection manager, routes from RDS (ADS) under the listener's
//! own name, HTTP filters fault → RBAC (when L7 policies apply: DENY
//! before ALLOW, as Istio orders them) → router.
use envoy_types::pb::envoy::{
    config::{
        core::v3::{address, socket_address, Address, SocketAddress},
        listener::v3::{filter, Filter, FilterChain, Listener},
    },
    extensions::filters::{
        http::{fault::v3::HttpFault, router::v3::Router},
        network::http_connection_manager::v3::{
            http_connection_manager::{CodecType, RouteSpecifier},
            http_filter, HttpConnectionManager, HttpFilter, Rds,
        },
    },
};

use super::{pb, WAYPOINT_HTTP_PORT};

pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";
pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// An HTTP filter with its typed config.
pub fn http_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The Listener `name`; `rbac_filters` go between fault and router.
pub fn listener(name: &str, rbac_filters: &[HttpFilter]) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(WAYPOINT_HTTP_PORT)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![http_connection_manager(
                &name.replace('/', "_"),
                name,
                rbac_filters,
            )],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The HTTP connection manager filter (codec AUTO) reading
/// `route_config_name` from RDS over ADS, HTTP filters fault →
/// `rbac_filters` → router; also the ingress gateway's.
pub fn http_connection_manager(
    stat_prefix: &str,
    route_config_name: &str,
    rbac_filters: &[HttpFilter],
) -> Filter {
    let mut http_filters = vec![http_filter(
        FAULT_FILTER,
        pb::any(FAULT_TYPE, &HttpFault::default()),
    )];
    http_filters.extend(rbac_filters.iter().cloned());
    http_filters.push(http_filter(
        ROUTER_FILTER,
        pb::any(ROUTER_TYPE, &Router::default()),
    ));
    let hcm = HttpConnectionManager {
        codec_type: CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(pb::ads()),
            route_config_name: route_config_name.to_string(),
        })),
        http_filters,
        ..Default::default()
    };
    Filter {
        name: HCM_FILTER.into(),
        config_type: Some(filter::ConfigType::TypedConfig(pb::any(HCM_TYPE, &hcm))),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn hcm(l: &Listener) -> HttpConnectionManager {
        let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
        else {
            panic!("no typed config");
        };
        assert_eq!(any.type_url, HCM_TYPE);
        HttpConnectionManager::decode(any.value.as_slice()).unwrap()
    }

    #[test]
    fn listener_binds_15080_and_reads_routes_from_ads() {
        let rbac = http_filter(
            "envoy.filters.http.rbac.deny",
            pb::any("type.googleapis.com/x", &Router::default()),
        );
        let l = listener("waypoint/shop/wp", &[rbac]);
        assert_eq!(l.name, "waypoint/shop/wp");
        let Some(address::Address::SocketAddress(sa)) = l.address.unwrap().address else {
            panic!("no socket address");
        };
        assert_eq!(sa.address, "0.0.0.0");
        assert_eq!(
            sa.port_specifier,
            Some(socket_address::PortSpecifier::PortValue(15080))
        );
        let listener = listener("waypoint/shop/wp", &[]);
        let h = hcm(&listener);
        assert_eq!(h.codec_type, CodecType::Auto as i32);
        let Some(RouteSpecifier::Rds(rds)) = h.route_specifier else {
            panic!("not RDS");
        };
        assert_eq!(rds.route_config_name, "waypoint/shop/wp");
        assert_eq!(rds.config_source, Some(pb::ads()));
        let names: Vec<_> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, [FAULT_FILTER, ROUTER_FILTER]);
    }

    #[test]
    fn rbac_filters_sit_between_fault_and_router() {
        let f = |n: &str| http_filter(n, pb::any("type.googleapis.com/x", &Router::default()));
        let l = listener("waypoint/a/b", &[f("deny"), f("allow")]);
        let names: Vec<String> = hcm(&l).http_filters.into_iter().map(|f| f.name).collect();
        assert_eq!(names, [FAULT_FILTER, "deny", "allow", ROUTER_FILTER]);
    }
}
