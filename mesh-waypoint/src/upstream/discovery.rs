//! How a cluster finds its hosts (Envoy's `type`): `EDS` and `STATIC`
//! from a ClusterLoadAssignment of IPs; `STRICT_DNS` / `LOGICAL_DNS` from
//! the hostnames of the inline `load_assignment`, resolved and refreshed
//! by [`super::dns`]; `ORIGINAL_DST` from the address the client dialled
//! ([`super::host_set`]). Errors name the field.
use std::time::Duration;

use envoy_types::pb::envoy::config::{
    cluster::v3::{
        cluster::{self, ClusterDiscoveryType, DiscoveryType, DnsLookupFamily},
        Cluster,
    },
    core::v3::{address, socket_address},
    endpoint::v3::lb_endpoint,
};
use mesh_xds::FieldRejection;

use super::cluster::duration;

/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);
/// A record's TTL is honoured down to this, so a TTL of 0 cannot spin.
pub const MIN_TTL_REFRESH: Duration = Duration::from_secs(1);
/// Envoy's default `original_dst_lb_config` header.
pub const ORIGINAL_DST_HEADER: &str = "x-envoy-original-dst-host";

/// `dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv6, else IPv4 (Envoy's AUTO).
    Auto,
    V4Only,
    V6Only,
    /// IPv4, else IPv6.
    V4Preferred,
    /// Both.
    All,
}

/// One name of a DNS cluster's `load_assignment`, at its port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
}

/// What a DNS cluster resolves, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `LOGICAL_DNS`: the first address only; `STRICT_DNS`: every one.
    pub logical: bool,
    pub targets: Vec<DnsTarget>,
    pub family: Family,
    /// `respect_dns_ttl`: refresh when the record's TTL lapses.
    pub respect_ttl: bool,
    /// `dns_refresh_rate`.
    pub refresh: Duration,
    /// `dns_failure_refresh_rate.base_interval`, else `refresh`.
    pub failure_refresh: Duration,
}

/// `original_dst_lb_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalDstConfig {
    /// `use_http_header`: the destination comes from this header.
    pub header: Option<http::HeaderName>,
    /// `upstream_port_override`.
    pub port_override: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// EDS, or STATIC with the inline assignment.
    Assigned,
    Dns(DnsConfig),
    OriginalDst(OriginalDstConfig),
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> FieldRejection {
    (field.into(), reason.into())
}

impl Discovery {
    pub fn from_proto(c: &Cluster) -> Result<Self, FieldRejection> {
        let kind = match &c.cluster_discovery_type {
            None => DiscoveryType::Static,
            Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(*t)
                .map_err(|_| reject("type", format!("unknown value {t}")))?,
            Some(ClusterDiscoveryType::ClusterType(t)) => {
                return Err(reject(
                    "cluster_type",
                    format!("custom cluster type {:?} is not supported", t.name),
                ))
            }
        };
        match kind {
            DiscoveryType::Static | DiscoveryType::Eds => Ok(Discovery::Assigned),
            DiscoveryType::StrictDns | DiscoveryType::LogicalDns => {
                dns(c, kind == DiscoveryType::LogicalDns).map(Discovery::Dns)
            }
            DiscoveryType::OriginalDst => original_dst(c).map(Discovery::OriginalDst),
        }
    }
}

#[allow(deprecated)]
fn dns(c: &Cluster, logical: bool) -> Result<DnsConfig, FieldRejection> {
    let family = match DnsLookupFamily::try_from(c.dns_lookup_family) {
        Ok(DnsLookupFamily::Auto) => Family::Auto,
        Ok(DnsLookupFamily::V4Only) => Family::V4Only,
        Ok(DnsLookupFamily::V6Only) => Family::V6Only,
        Ok(DnsLookupFamily::V4Preferred) => Family::V4Preferred,
        Ok(DnsLookupFamily::All) => Family::All,
        Err(_) => {
            return Err(reject(
                "dns_lookup_family",
                format!("unknown value {}", c.dns_lookup_family),
            ))
        }
    };
    let refresh = duration(c.dns_refresh_rate.as_ref(), "dns_refresh_rate")?
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_DNS_REFRESH);
    let failure_refresh = duration(
        c.dns_failure_refresh_rate
            .as_ref()
            .and_then(|r| r.base_interval.as_ref()),
        "dns_failure_refresh_rate.base_interval",
    )?
    .filter(|d| !d.is_zero())
    .unwrap_or(refresh);
    let mut targets = Vec::new();
    let cla = c.load_assignment.as_ref().ok_or_else(|| {
        reject(
            "load_assignment",
            "a DNS cluster needs the names to resolve",
        )
    })?;
    for (l, locality) in cla.endpoints.iter().enumerate() {
        for (i, e) in locality.lb_endpoints.iter().enumerate() {
            let field = format!(
                "load_assignment.endpoints[{l}].lb_endpoints[{i}].endpoint.address.socket_address"
            );
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                return Err(reject(field, "missing"));
            };
            let Some(address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                return Err(reject(field, "missing"));
            };
            if sa.address.is_empty()
                || hickory_resolver::proto::rr::Name::from_utf8(&sa.address).is_err()
            {
                return Err(reject(
                    format!("{field}.address"),
                    format!("{:?} is not a DNS name", sa.address),
                ));
            }
            let port = match sa.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => {
                    u16::try_from(p).ok().filter(|p| *p != 0)
                }
                _ => None,
            }
            .ok_or_else(|| reject(format!("{field}.port_value"), "missing or not a port"))?;
            targets.push(DnsTarget {
                host: sa.address.clone(),
                port,
            });
        }
    }
    if targets.is_empty() {
        return Err(reject("load_assignment.endpoints", "no name to resolve"));
    }
    if logical && targets.len() > 1 {
        return Err(reject(
            "load_assignment.endpoints",
            "LOGICAL_DNS takes exactly one name",
        ));
    }
    Ok(DnsConfig {
        logical,
        targets,
        family,
        respect_ttl: c.respect_dns_ttl,
        refresh,
        failure_refresh,
    })
}

fn original_dst(c: &Cluster) -> Result<OriginalDstConfig, FieldRejection> {
    let mut cfg = OriginalDstConfig {
        header: None,
        port_override: None,
    };
    if let Some(cluster::LbConfig::OriginalDstLbConfig(o)) = &c.lb_config {
        if o.use_http_header {
            let name = if o.http_header_name.is_empty() {
                ORIGINAL_DST_HEADER
            } else {
                o.http_header_name.as_str()
            };
            cfg.header = Some(name.parse().map_err(|_| {
                reject(
                    "original_dst_lb_config.http_header_name",
                    format!("{name:?} is not a header name"),
                )
            })?);
        }
        if let Some(p) = o.upstream_port_override {
            cfg.port_override = Some(u16::try_from(p.value).ok().filter(|p| *p != 0).ok_or_else(
                || {
                    reject(
                        "original_dst_lb_config.upstream_port_override",
                        format!("{} is not a port", p.value),
                    )
                },
            )?);
        }
    }
    Ok(cfg)
}
