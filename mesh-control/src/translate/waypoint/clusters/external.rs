//! The clusters of a ServiceEntry host, shaped by its `resolution` as
//! istiod shapes them:
//!
//! - `DNS` → `STRICT_DNS`, `DNS_ROUND_ROBIN` → `LOGICAL_DNS`: an inline
//!   `load_assignment` of hostnames (the inline endpoints, else the host
//!   itself) at the target port, `respect_dns_ttl`, `V4_PREFERRED`.
//! - `STATIC` → EDS (the inline IP endpoints, [`super::super::endpoints`]).
//! - `NONE` → `ORIGINAL_DST` with `CLUSTER_PROVIDED` balancing (Istio's
//!   PassthroughCluster shape): the address the client dialled, the port
//!   overridden when the entry maps it to another target port.
//!
//! The DestinationRule's `tls` becomes the transport socket ([`super::tls`]);
//! endpoints of a `MESH_EXTERNAL` host are never mesh workloads, so they
//! carry no workload uid and are reached directly.
use envoy_types::pb::envoy::config::{
    cluster::v3::{
        cluster::{
            ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy, OriginalDstLbConfig,
        },
        Cluster,
    },
    endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
        LocalityLbEndpoints,
    },
};

use super::{
    pb,
    tls::{self, Mode},
};
use crate::{
    model::{
        routing::{PolicySettings, Subset},
        service_entry::{EndpointAddress, External, Resolution},
        Service,
    },
    translate::waypoint::endpoints::socket,
};

/// Istio's `dnsRefreshRate` default; with `respect_dns_ttl` the record's
/// TTL decides and this only applies when it cannot.
const DNS_REFRESH_RATE: std::time::Duration = std::time::Duration::from_secs(60);

fn in_subset(subset: Option<&Subset>, labels: &std::collections::BTreeMap<String, String>) -> bool {
    subset.is_none_or(|s| s.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// True when the cluster's endpoints come over EDS.
pub fn uses_eds(svc: &Service) -> bool {
    svc.external
        .as_ref()
        .is_none_or(|e| e.resolution == Resolution::Static)
}

/// The port an endpoint of `ext` listens on for service port `port`: its
/// own port for the port's name, else the service's target port.
pub fn endpoint_port(
    svc: &Service,
    ext: &External,
    port: u16,
    ports: &std::collections::BTreeMap<String, u16>,
) -> u16 {
    let target = svc.ports.get(&port).copied().unwrap_or(port);
    ext.port_names
        .get(&port)
        .and_then(|name| ports.get(name))
        .copied()
        .unwrap_or(target)
}

/// Reshapes `c` (built for EDS) for the external service `svc`, port
/// `port`; Err names what in the DestinationRule's `tls` is wrong.
pub fn shape(
    c: &mut Cluster,
    svc: &Service,
    ext: &External,
    port: u16,
    subset: Option<&Subset>,
    settings: &PolicySettings,
) -> Result<(), String> {
    // The fields istiod writes (a newer Envoy also reads them from the
    // `envoy.clusters.dns` extension).
    #[allow(deprecated)]
    let dns = |c: &mut Cluster, kind: DiscoveryType| {
        c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(kind as i32));
        c.eds_cluster_config = None;
        c.respect_dns_ttl = true;
        c.dns_refresh_rate = Some(pb::duration(DNS_REFRESH_RATE));
        c.dns_lookup_family = DnsLookupFamily::V4Preferred as i32;
        c.load_assignment = Some(dns_assignment(&c.name, svc, ext, port, subset));
    };
    match ext.resolution {
        Resolution::Dns => dns(c, DiscoveryType::StrictDns),
        Resolution::DnsRoundRobin => dns(c, DiscoveryType::LogicalDns),
        Resolution::Static => {}
        Resolution::None => {
            c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
            c.eds_cluster_config = None;
            c.lb_policy = LbPolicy::ClusterProvided as i32;
            c.lb_config = None;
            let target = svc.ports.get(&port).copied().unwrap_or(port);
            if target != port {
                c.lb_config = Some(
                    envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig::OriginalDstLbConfig(
                        OriginalDstLbConfig {
                            upstream_port_override: Some(pb::u32v(u32::from(target))),
                            ..Default::default()
                        },
                    ),
                );
            }
        }
    }
    if let Some(v) = &settings.tls {
        let t = tls::parse(v)?;
        if t.mode != Mode::IstioMutual {
            c.transport_socket = tls::transport_socket(&t, &svc.hostname, &ext.subject_alt_names);
        }
    }
    Ok(())
}

/// The hostnames (or IPs) a DNS cluster resolves: the inline endpoints,
/// else the host itself, at their ports for `port`.
fn dns_assignment(
    name: &str,
    svc: &Service,
    ext: &External,
    port: u16,
    subset: Option<&Subset>,
) -> ClusterLoadAssignment {
    let endpoint = |address: &str, p: u16, weight: u32| LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket(address, u32::from(p))),
            hostname: address.to_string(),
            ..Default::default()
        })),
        load_balancing_weight: (weight > 0).then(|| pb::u32v(weight)),
        ..Default::default()
    };
    let lb_endpoints = if ext.endpoints.is_empty() {
        let target = svc.ports.get(&port).copied().unwrap_or(port);
        vec![endpoint(&svc.hostname, target, 0)]
    } else {
        ext.endpoints
            .iter()
            .filter(|e| in_subset(subset, &e.labels))
            .map(|e| {
                let address = match &e.address {
                    EndpointAddress::Ip(ip) => ip.to_string(),
                    EndpointAddress::Host(h) => h.clone(),
                };
                endpoint(&address, endpoint_port(svc, ext, port, &e.ports), e.weight)
            })
            .collect()
    };
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The EDS assignment of a `STATIC` host with inline endpoints: every
/// endpoint whose labels the subset's match, at its port for `port`.
pub fn static_assignment(
    name: &str,
    svc: &Service,
    ext: &External,
    port: u16,
    subset: Option<&Subset>,
) -> ClusterLoadAssignment {
    let lb_endpoints = ext
        .endpoints
        .iter()
        .filter(|e| in_subset(subset, &e.labels))
        .filter_map(|e| {
            let EndpointAddress::Ip(ip) = &e.address else {
                return None;
            };
            Some(LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(
                        &ip.to_string(),
                        u32::from(endpoint_port(svc, ext, port, &e.ports)),
                    )),
                    ..Default::default()
                })),
                health_status: envoy_types::pb::envoy::config::core::v3::HealthStatus::Healthy
                    as i32,
                load_balancing_weight: (e.weight > 0).then(|| pb::u32v(e.weight)),
                ..Default::default()
            })
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}
