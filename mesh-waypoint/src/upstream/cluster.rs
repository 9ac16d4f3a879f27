//! The cluster model: what the waypoint takes from an Envoy `Cluster` (LB
//! policy, circuit breakers, HTTP protocol options, outlier detection) and
//! from its `ClusterLoadAssignment` (endpoints), checked field by field:
//! how hosts are found ([`Discovery`]), TLS origination ([`TlsSpec`]) and
//! the service the cluster stands for (Istio's `metadata`, for telemetry).
//! Errors name the field as a path inside the resource.
use std::{net::SocketAddr, time::Duration};

use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{cluster, Cluster},
        core::v3::{address, socket_address, HealthStatus},
        endpoint::v3::{lb_endpoint, ClusterLoadAssignment},
    },
    extensions::upstreams::http::v3::{
        http_protocol_options::{explicit_http_config::ProtocolConfig, UpstreamProtocolOptions},
        HttpProtocolOptions,
    },
};
use mesh_xds::{proto::wkt, FieldRejection};
use prost::Message;

use super::{discovery::Discovery, outlier::OutlierConfig, tls::TlsSpec};

/// Key of the HTTP protocol options in `typed_extension_protocol_options`.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Envoy's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default idle timeout of upstream connections.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `minimum_ring_size`.
pub const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's default ring limit (`maximum_ring_size`).
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's default Maglev `table_size` (a prime).
pub const DEFAULT_MAGLEV_SIZE: u64 = 65537;

/// Load balancing policy and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    LeastRequest,
    RingHash { min_ring_size: u64 },
    Maglev { table_size: u64 },
}

impl LbPolicy {
    pub fn name(&self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::Random => "RANDOM",
            LbPolicy::LeastRequest => "LEAST_REQUEST",
            LbPolicy::RingHash { .. } => "RING_HASH",
            LbPolicy::Maglev { .. } => "MAGLEV",
        }
    }
}

/// Envoy circuit breaker thresholds (DEFAULT priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Limits {
    /// Envoy's defaults when a threshold is absent.
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// HTTP version spoken to the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// HTTP connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub protocol: Protocol,
    pub idle_timeout: Duration,
    /// 0 = unlimited.
    pub max_requests_per_connection: u32,
    pub connect_timeout: Duration,
}

/// Everything of a `Cluster` the waypoint honours.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub lb: LbPolicy,
    pub limits: Limits,
    pub pool: PoolConfig,
    pub outlier: Option<OutlierConfig>,
    /// Percent (0–100); 0 turns panic mode off.
    pub healthy_panic_threshold: f64,
    pub discovery: Discovery,
    /// `transport_socket`: TLS to every endpoint.
    pub tls: Option<TlsSpec>,
    /// `metadata.filter_metadata["istio"]["services"][0]`.
    pub service: Option<ServiceLabel>,
}

/// The service a cluster stands for, as istiod writes it in the cluster's
/// metadata: a ServiceEntry host is named by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLabel {
    pub host: String,
    pub name: String,
    pub namespace: String,
}

fn service_label(c: &Cluster) -> Option<ServiceLabel> {
    let istio = c.metadata.as_ref()?.filter_metadata.get("istio")?;
    let wkt::value::Kind::ListValue(list) = istio.fields.get("services")?.kind.as_ref()? else {
        return None;
    };
    let wkt::value::Kind::StructValue(s) = list.values.first()?.kind.as_ref()? else {
        return None;
    };
    Some(ServiceLabel {
        host: string_field(s, "host")?,
        name: string_field(s, "name")?,
        namespace: string_field(s, "namespace")?,
    })
}

/// One endpoint of a `ClusterLoadAssignment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub addr: SocketAddr,
    /// `metadata.filter_metadata["istio"]["workload"]`.
    pub workload_uid: Option<String>,
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> FieldRejection {
    (field.into(), reason.into())
}

pub(crate) fn duration(
    d: Option<&wkt::Duration>,
    field: &str,
) -> Result<Option<Duration>, FieldRejection> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(reject(
            field,
            format!("invalid duration {}s {}ns", d.seconds, d.nanos),
        ));
    }
    Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32)))
}

fn lb_policy(c: &Cluster, discovery: &Discovery) -> Result<LbPolicy, FieldRejection> {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy as P;
    match P::try_from(c.lb_policy) {
        // The host is the original destination: no balancing happens.
        Ok(P::ClusterProvided) if matches!(discovery, Discovery::OriginalDst(_)) => {
            Ok(LbPolicy::RoundRobin)
        }
        Ok(P::RoundRobin) => Ok(LbPolicy::RoundRobin),
        Ok(P::Random) => Ok(LbPolicy::Random),
        Ok(P::LeastRequest) => Ok(LbPolicy::LeastRequest),
        Ok(P::RingHash) => {
            let min = match &c.lb_config {
                Some(cluster::LbConfig::RingHashLbConfig(r)) => {
                    r.minimum_ring_size.map(|v| v.value)
                }
                _ => None,
            }
            .unwrap_or(DEFAULT_RING_SIZE);
            if min == 0 || min > MAX_RING_SIZE {
                return Err(reject(
                    "ring_hash_lb_config.minimum_ring_size",
                    format!("{min} is outside 1..={MAX_RING_SIZE}"),
                ));
            }
            Ok(LbPolicy::RingHash { min_ring_size: min })
        }
        Ok(P::Maglev) => {
            let size = match &c.lb_config {
                Some(cluster::LbConfig::MaglevLbConfig(m)) => m.table_size.map(|v| v.value),
                _ => None,
            }
            .unwrap_or(DEFAULT_MAGLEV_SIZE);
            if !super::lb::maglev::is_prime(size) || size > 5_000_011 {
                return Err(reject(
                    "maglev_lb_config.table_size",
                    format!("{size} is not a prime up to 5000011"),
                ));
            }
            Ok(LbPolicy::Maglev { table_size: size })
        }
        Ok(other) => Err(reject(
            "lb_policy",
            format!("{} is not supported", other.as_str_name()),
        )),
        Err(_) => Err(reject(
            "lb_policy",
            format!("unknown value {}", c.lb_policy),
        )),
    }
}

fn limits(c: &Cluster) -> Limits {
    let mut l = Limits::default();
    let Some(t) = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.iter().find(|t| t.priority == 0))
    else {
        return l;
    };
    let pick = |v: Option<wkt::UInt32Value>, d: u32| v.map_or(d, |v| v.value);
    l.max_connections = pick(t.max_connections, l.max_connections);
    l.max_pending_requests = pick(t.max_pending_requests, l.max_pending_requests);
    l.max_requests = pick(t.max_requests, l.max_requests);
    l.max_retries = pick(t.max_retries, l.max_retries);
    l
}

fn pool(c: &Cluster) -> Result<PoolConfig, FieldRejection> {
    let connect_timeout =
        duration(c.connect_timeout.as_ref(), "connect_timeout")?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    #[allow(deprecated)]
    let mut cfg = PoolConfig {
        protocol: Protocol::Http1,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        max_requests_per_connection: c.max_requests_per_connection.map_or(0, |v| v.value),
        connect_timeout,
    };
    let Some(any) = c
        .typed_extension_protocol_options
        .get(HTTP_PROTOCOL_OPTIONS)
    else {
        return Ok(cfg);
    };
    let field = format!("typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS}]");
    let opts = HttpProtocolOptions::decode(any.value.as_slice())
        .map_err(|e| reject(field.clone(), format!("not an HttpProtocolOptions: {e}")))?;
    if let Some(common) = &opts.common_http_protocol_options {
        if let Some(idle) = duration(
            common.idle_timeout.as_ref(),
            &format!("{field}.common_http_protocol_options.idle_timeout"),
        )? {
            // 0 s disables the idle timeout in Envoy: a year stands in for
            // "never" (and keeps deadline arithmetic finite).
            cfg.idle_timeout = if idle.is_zero() {
                Duration::from_secs(365 * 24 * 3600)
            } else {
                idle
            };
        }
        if let Some(max) = common.max_requests_per_connection {
            cfg.max_requests_per_connection = max.value;
        }
    }
    // Downstream-protocol / auto config: HTTP/1.1, what every endpoint
    // speaks.
    if let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) = &opts.upstream_protocol_options {
        match &e.protocol_config {
            Some(ProtocolConfig::Http2ProtocolOptions(_)) => cfg.protocol = Protocol::Http2,
            Some(ProtocolConfig::HttpProtocolOptions(_)) | None => cfg.protocol = Protocol::Http1,
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                return Err(reject(
                    format!("{field}.explicit_http_config.http3_protocol_options"),
                    "HTTP/3 upstreams are not supported",
                ))
            }
        }
    }
    Ok(cfg)
}

impl ClusterConfig {
    /// Reads and checks a CDS resource.
    pub fn from_proto(c: &Cluster) -> Result<Self, FieldRejection> {
        if c.name.is_empty() {
            return Err(reject("name", "empty"));
        }
        let healthy_panic_threshold = c
            .common_lb_config
            .as_ref()
            .map_or(Some(50.0), |l| {
                l.healthy_panic_threshold.as_ref().map(|p| p.value)
            })
            .unwrap_or(50.0);
        if !(0.0..=100.0).contains(&healthy_panic_threshold) {
            return Err(reject(
                "common_lb_config.healthy_panic_threshold",
                format!("{healthy_panic_threshold} is outside 0..=100"),
            ));
        }
        let discovery = Discovery::from_proto(c)?;
        Ok(ClusterConfig {
            name: c.name.clone(),
            lb: lb_policy(c, &discovery)?,
            limits: limits(c),
            pool: pool(c)?,
            outlier: c
                .outlier_detection
                .as_ref()
                .map(OutlierConfig::from_proto)
                .transpose()?,
            healthy_panic_threshold,
            discovery,
            tls: TlsSpec::from_proto(c.transport_socket.as_ref())?,
            service: service_label(c),
        })
    }
}

fn string_field(s: &wkt::Struct, key: &str) -> Option<String> {
    match s.fields.get(key)?.kind.as_ref()? {
        wkt::value::Kind::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}

/// The endpoints of a CLA that take traffic (health UNKNOWN, HEALTHY or
/// DEGRADED, as Envoy), in order.
pub fn endpoints(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointConfig>, FieldRejection> {
    let mut out = Vec::new();
    for (l, locality) in cla.endpoints.iter().enumerate() {
        for (i, e) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("endpoints[{l}].lb_endpoints[{i}]");
            let usable = matches!(
                HealthStatus::try_from(e.health_status),
                Ok(HealthStatus::Unknown | HealthStatus::Healthy | HealthStatus::Degraded)
            );
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                return Err(reject(format!("{field}.endpoint"), "missing"));
            };
            let Some(address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                return Err(reject(
                    format!("{field}.endpoint.address.socket_address"),
                    "missing",
                ));
            };
            let ip = sa.address.parse().map_err(|_| {
                reject(
                    format!("{field}.endpoint.address.socket_address.address"),
                    format!("{:?} is not an IP address", sa.address),
                )
            })?;
            let port = match sa.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => {
                    u16::try_from(p).ok().filter(|p| *p != 0)
                }
                _ => None,
            }
            .ok_or_else(|| {
                reject(
                    format!("{field}.endpoint.address.socket_address.port_value"),
                    "missing or not a port",
                )
            })?;
            if !usable {
                continue;
            }
            let workload_uid = e
                .metadata
                .as_ref()
                .and_then(|m| m.filter_metadata.get("istio"))
                .and_then(|s| string_field(s, "workload"));
            out.push(EndpointConfig {
                addr: SocketAddr::new(ip, port),
                workload_uid,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::{
        cluster::v3::{circuit_breakers::Thresholds, CircuitBreakers},
        core::v3::{Address, HttpProtocolOptions as CommonOpts, Metadata, SocketAddress},
        endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints},
    };
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::ExplicitHttpConfig;

    pub fn cla(name: &str, addrs: &[SocketAddr]) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: addrs
                    .iter()
                    .map(|a| LbEndpoint {
                        health_status: HealthStatus::Healthy as i32,
                        metadata: Some(Metadata {
                            filter_metadata: [(
                                "istio".to_string(),
                                wkt::Struct {
                                    fields: [(
                                        "workload".to_string(),
                                        wkt::Value {
                                            kind: Some(wkt::value::Kind::StringValue(format!(
                                                "uid-{a}"
                                            ))),
                                        },
                                    )]
                                    .into(),
                                },
                            )]
                            .into(),
                            ..Default::default()
                        }),
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(Address {
                                address: Some(address::Address::SocketAddress(SocketAddress {
                                    address: a.ip().to_string(),
                                    port_specifier: Some(socket_address::PortSpecifier::PortValue(
                                        u32::from(a.port()),
                                    )),
                                    ..Default::default()
                                })),
                            }),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    pub fn protocol_options(http2: bool, max_per_conn: Option<u32>) -> wkt::Any {
        protocol_options_idle(http2, max_per_conn, Duration::from_secs(30))
    }

    pub fn protocol_options_idle(
        http2: bool,
        max_per_conn: Option<u32>,
        idle: Duration,
    ) -> wkt::Any {
        let opts = HttpProtocolOptions {
            common_http_protocol_options: Some(CommonOpts {
                idle_timeout: Some(wkt::Duration {
                    seconds: idle.as_secs() as i64,
                    nanos: idle.subsec_nanos() as i32,
                }),
                max_requests_per_connection: max_per_conn.map(|value| wkt::UInt32Value { value }),
                ..Default::default()
            }),
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(if http2 {
                        ProtocolConfig::Http2ProtocolOptions(Default::default())
                    } else {
                        ProtocolConfig::HttpProtocolOptions(Default::default())
                    }),
                },
            )),
            ..Default::default()
        };
        wkt::Any {
            type_url: format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
            value: opts.encode_to_vec(),
        }
    }

    pub fn thresholds(conns: u32, pending: u32, requests: u32, retries: u32) -> CircuitBreakers {
        let v = |value| Some(wkt::UInt32Value { value });
        CircuitBreakers {
            thresholds: vec![Thresholds {
                max_connections: v(conns),
                max_pending_requests: v(pending),
                max_requests: v(requests),
                max_retries: v(retries),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_fields_istio_writes() {
        let c = Cluster {
            name: "outbound|9080|v1|reviews.default.svc.cluster.local".into(),
            lb_policy: cluster::LbPolicy::RoundRobin as i32,
            connect_timeout: Some(wkt::Duration {
                seconds: 10,
                nanos: 0,
            }),
            circuit_breakers: Some(thresholds(1, 1, u32::MAX, u32::MAX)),
            typed_extension_protocol_options: [(
                HTTP_PROTOCOL_OPTIONS.to_string(),
                protocol_options(true, Some(1)),
            )]
            .into(),
            common_lb_config: Some(cluster::CommonLbConfig {
                healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                    value: 0.0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cfg = ClusterConfig::from_proto(&c).unwrap();
        assert_eq!(cfg.lb, LbPolicy::RoundRobin);
        assert_eq!(cfg.limits.max_connections, 1);
        assert_eq!(cfg.limits.max_pending_requests, 1);
        assert_eq!(cfg.limits.max_requests, u32::MAX);
        assert_eq!(cfg.pool.protocol, Protocol::Http2);
        assert_eq!(cfg.pool.max_requests_per_connection, 1);
        assert_eq!(cfg.pool.idle_timeout, Duration::from_secs(30));
        assert_eq!(cfg.pool.connect_timeout, Duration::from_secs(10));
        assert_eq!(cfg.healthy_panic_threshold, 0.0);
        assert!(cfg.outlier.is_none());
    }

    #[test]
    fn defaults_follow_envoy() {
        let cfg = ClusterConfig::from_proto(&Cluster {
            name: "c".into(),
            lb_policy: cluster::LbPolicy::RingHash as i32,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            cfg.lb,
            LbPolicy::RingHash {
                min_ring_size: 1024
            }
        );
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.pool.protocol, Protocol::Http1);
        assert_eq!(cfg.pool.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(cfg.healthy_panic_threshold, 50.0);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad_maglev = Cluster {
            name: "c".into(),
            lb_policy: cluster::LbPolicy::Maglev as i32,
            lb_config: Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: Some(wkt::UInt64Value { value: 1000 }),
            })),
            ..Default::default()
        };
        assert_eq!(
            ClusterConfig::from_proto(&bad_maglev).unwrap_err().0,
            "maglev_lb_config.table_size"
        );
        let bad_timeout = Cluster {
            name: "c".into(),
            connect_timeout: Some(wkt::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            ClusterConfig::from_proto(&bad_timeout).unwrap_err().0,
            "connect_timeout"
        );
        let mut bad_ip = cla("c", &["10.0.0.1:80".parse().unwrap()]);
        if let Some(lb_endpoint::HostIdentifier::Endpoint(e)) =
            &mut bad_ip.endpoints[0].lb_endpoints[0].host_identifier
        {
            if let Some(address::Address::SocketAddress(sa)) =
                e.address.as_mut().and_then(|a| a.address.as_mut())
            {
                sa.address = "reviews".into();
            }
        }
        assert_eq!(
            endpoints(&bad_ip).unwrap_err().0,
            "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"
        );
    }

    #[test]
    fn endpoints_carry_the_workload_uid_and_skip_unhealthy() {
        let a: SocketAddr = "10.244.1.3:9080".parse().unwrap();
        let b: SocketAddr = "10.244.1.4:9080".parse().unwrap();
        let mut c = cla("c", &[a, b]);
        c.endpoints[0].lb_endpoints[1].health_status = HealthStatus::Unhealthy as i32;
        let eps = endpoints(&c).unwrap();
        assert_eq!(
            eps,
            vec![EndpointConfig {
                addr: a,
                workload_uid: Some(format!("uid-{a}")),
            }]
        );
    }
}
