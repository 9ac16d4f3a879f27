//! Clusters, named as Istio names them: `outbound|<port>||<fqdn>` for
//! every service port, `outbound|<port>|<subset>|<fqdn>` for every subset
//! of the service's DestinationRule; EDS over ADS, with the rule's
//! traffic policy ([`super::policy`]) as Envoy settings. ServiceEntry
//! hosts get the discovery type their resolution asks for and the rule's
//! TLS origination ([`external`], [`tls`]). Every cluster carries Istio's
//! `metadata.filter_metadata["istio"]["services"]` (host, name,
//! namespace), what the waypoint's telemetry names the service by.
pub mod external;
pub mod tls;

use std::collections::HashMap;

use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            circuit_breakers::Thresholds,
            cluster::{
                ClusterDiscoveryType, CommonLbConfig, DiscoveryType, EdsClusterConfig, LbConfig,
                LbPolicy, MaglevLbConfig, RingHashLbConfig,
            },
            CircuitBreakers, Cluster, OutlierDetection,
        },
        core::v3::{
            Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonOptions,
            Metadata, RoutingPriority,
        },
    },
    extensions::upstreams::http::v3::{
        http_protocol_options::{
            explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
        },
        HttpProtocolOptions,
    },
    r#type::v3::Percent,
};
use envoy_types::pb::google::protobuf::UInt64Value;

use super::{cluster_name, pb, policy, Cx};
use crate::model::{
    routing::{
        ConnectionPool, LoadBalancer, OutlierDetection as IstioOutlier, PolicySettings, SimpleLb,
    },
    Service,
};

pub const PROTOCOL_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const PROTOCOL_OPTIONS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Istio's connect timeout when the DestinationRule sets none.
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Istio's ring size when `consistentHash` names none.
const DEFAULT_RING_SIZE: u64 = 1024;

/// One cluster of the mesh: which service, port and subset.
#[derive(Debug, Clone, Copy)]
pub struct ClusterRef<'s> {
    pub service: &'s Service,
    pub port: u16,
    pub subset: Option<&'s crate::model::routing::Subset>,
}

impl ClusterRef<'_> {
    pub fn name(&self) -> String {
        cluster_name(
            self.port,
            self.subset.map(|s| s.name.as_str()),
            &self.service.hostname,
        )
    }
}

/// Every (service, port, subset) that gets a cluster.
pub fn cluster_refs<'s>(cx: &Cx<'s>) -> Vec<ClusterRef<'s>> {
    let mut out = vec![];
    for svc in cx.services() {
        let dr = policy::destination_rule(cx, svc);
        for port in svc.ports.keys() {
            out.push(ClusterRef {
                service: svc,
                port: *port,
                subset: None,
            });
            for subset in dr.iter().flat_map(|dr| &dr.subsets) {
                out.push(ClusterRef {
                    service: svc,
                    port: *port,
                    subset: Some(subset),
                });
            }
        }
    }
    out
}

/// Every cluster. A ServiceEntry host's cluster whose DestinationRule
/// `tls` cannot be read is left out (requests to it fail, never in
/// plaintext) and logged naming the rule.
pub fn clusters(cx: &Cx<'_>) -> Vec<Cluster> {
    cluster_refs(cx)
        .into_iter()
        .filter_map(|r| {
            let dr = policy::destination_rule(cx, r.service);
            let settings = policy::settings(dr, r.subset.map(|s| s.name.as_str()), r.port);
            let mut c = cluster(&r.name(), http2(r.service, r.port), &settings);
            c.metadata = Some(service_metadata(r.service));
            if let Some(ext) = &r.service.external {
                if let Err(e) = external::shape(&mut c, r.service, ext, r.port, r.subset, &settings)
                {
                    tracing::warn!(
                        cluster = %c.name,
                        rule = %dr.map(|d| d.resource()).unwrap_or_default(),
                        error = %e,
                        "cluster left out: its DestinationRule's trafficPolicy.{e}"
                    );
                    return None;
                }
            }
            Some(c)
        })
        .collect()
}

/// `filter_metadata["istio"]["services"] = [{host, name, namespace}]`, as
/// istiod writes it; a ServiceEntry host is named by the host.
pub fn service_metadata(svc: &Service) -> Metadata {
    let name = if svc.external.is_some() {
        svc.hostname.as_str()
    } else {
        svc.name.as_str()
    };
    let entry = pb::structure([
        ("host".to_string(), pb::string_value(&svc.hostname)),
        ("name".to_string(), pb::string_value(name)),
        ("namespace".to_string(), pb::string_value(&svc.namespace)),
    ]);
    Metadata {
        filter_metadata: HashMap::from([(
            "istio".to_string(),
            pb::structure([(
                "services".to_string(),
                pb::list_value(vec![envoy_types::pb::google::protobuf::Value {
                    kind: Some(envoy_types::pb::google::protobuf::value::Kind::StructValue(
                        entry,
                    )),
                }]),
            )]),
        )]),
        ..Default::default()
    }
}

/// True when the port speaks HTTP/2 to its pods (Istio's protocol
/// selection: `appProtocol` or port name `grpc*`, `http2*`, `h2c`).
pub fn http2(svc: &Service, port: u16) -> bool {
    svc.port_protocols.get(&port).is_some_and(|p| {
        let p = p.to_ascii_lowercase();
        p.starts_with("grpc") || p.starts_with("http2") || p == "h2c" || p.starts_with("h2c-")
    })
}

/// The cluster `name` with `settings`.
pub fn cluster(name: &str, http2: bool, settings: &PolicySettings) -> Cluster {
    let pool = settings.connection_pool.clone().unwrap_or_default();
    let (lb_policy, lb_config) = load_balancing(settings.load_balancer.as_ref());
    let mut c = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(pb::ads()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(pb::duration(
            pool.tcp
                .as_ref()
                .and_then(|t| t.connect_timeout)
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        )),
        lb_policy: lb_policy as i32,
        lb_config,
        circuit_breakers: Some(circuit_breakers(&pool)),
        typed_extension_protocol_options: HashMap::from([(
            PROTOCOL_OPTIONS_KEY.to_string(),
            pb::any(PROTOCOL_OPTIONS_TYPE, &protocol_options(&pool, http2)),
        )]),
        ..Default::default()
    };
    if let Some(o) = &settings.outlier_detection {
        c.outlier_detection = Some(outlier_detection(o));
        c.common_lb_config = Some(CommonLbConfig {
            healthy_panic_threshold: Some(Percent {
                value: f64::from(o.min_health_percent.unwrap_or(0)),
            }),
            ..Default::default()
        });
    }
    c
}

fn load_balancing(lb: Option<&LoadBalancer>) -> (LbPolicy, Option<LbConfig>) {
    let Some(lb) = lb else {
        return (LbPolicy::LeastRequest, None);
    };
    if let Some(hash) = &lb.consistent_hash {
        if let Some(size) = hash.maglev_table_size {
            return (
                LbPolicy::Maglev,
                Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: Some(UInt64Value { value: size }),
                })),
            );
        }
        return (
            LbPolicy::RingHash,
            Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value {
                    value: hash
                        .ring_hash_minimum_ring_size
                        .unwrap_or(DEFAULT_RING_SIZE),
                }),
                ..Default::default()
            })),
        );
    }
    let policy = match lb.simple {
        Some(SimpleLb::RoundRobin) => LbPolicy::RoundRobin,
        Some(SimpleLb::Random) => LbPolicy::Random,
        // PASSTHROUGH (original destination) has no meaning behind a
        // waypoint that resolves endpoints itself.
        Some(SimpleLb::LeastRequest | SimpleLb::Unspecified | SimpleLb::Passthrough) | None => {
            LbPolicy::LeastRequest
        }
    };
    (policy, None)
}

fn circuit_breakers(pool: &ConnectionPool) -> CircuitBreakers {
    let tcp = pool.tcp.clone().unwrap_or_default();
    let http = pool.http.clone().unwrap_or_default();
    let limit = |v: Option<u32>| Some(pb::u32v(v.unwrap_or(u32::MAX)));
    CircuitBreakers {
        thresholds: vec![Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: limit(tcp.max_connections),
            max_pending_requests: limit(http.http1_max_pending_requests),
            max_requests: limit(http.http2_max_requests),
            max_retries: limit(http.max_retries),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn protocol_options(pool: &ConnectionPool, http2: bool) -> HttpProtocolOptions {
    let http = pool.http.clone().unwrap_or_default();
    let common = CommonOptions {
        idle_timeout: pb::positive_duration(http.idle_timeout),
        max_requests_per_connection: http
            .max_requests_per_connection
            .filter(|n| *n > 0)
            .map(pb::u32v),
        ..Default::default()
    };
    let protocol = if http2 {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
    } else {
        ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    HttpProtocolOptions {
        common_http_protocol_options: Some(common),
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(protocol),
            },
        )),
        ..Default::default()
    }
}

fn outlier_detection(o: &IstioOutlier) -> OutlierDetection {
    let enforcing = |set: Option<u32>| Some(pb::u32v(if set.is_some() { 100 } else { 0 }));
    OutlierDetection {
        consecutive_5xx: o.consecutive_5xx_errors.map(pb::u32v),
        enforcing_consecutive_5xx: enforcing(o.consecutive_5xx_errors),
        consecutive_gateway_failure: o.consecutive_gateway_errors.map(pb::u32v),
        enforcing_consecutive_gateway_failure: enforcing(o.consecutive_gateway_errors),
        enforcing_success_rate: Some(pb::u32v(0)),
        interval: pb::positive_duration(o.interval),
        base_ejection_time: pb::positive_duration(o.base_ejection_time),
        max_ejection_percent: o.max_ejection_percent.map(pb::u32v),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
