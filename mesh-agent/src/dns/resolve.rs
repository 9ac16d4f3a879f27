//! Resolving ServiceEntry endpoints known by name (`resolution: DNS`) for
//! the outbound proxy: one resolver shared by every connection, asking the
//! node's upstream resolver (`--dns-upstream`), with hickory's cache, which
//! keeps each answer for its records' TTL and holds at most
//! [`CACHE_ENTRIES`] names.
use std::{net::IpAddr, net::SocketAddr, time::Duration};

use hickory_resolver::{
    config::{
        ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
        ResolverOpts,
    },
    net::runtime::TokioRuntimeProvider,
    Resolver as HickoryResolver, TokioResolver,
};

/// Names (and record types) the cache holds at most.
pub const CACHE_ENTRIES: u64 = 1024;
/// How long one query to the upstream may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Answers are kept at most this long, whatever their TTL says.
pub const MAX_TTL: Duration = Duration::from_secs(300);

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolving {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: hickory_resolver::net::NetError,
    },
    #[error("{host} is not a valid DNS name")]
    BadName { host: String },
    #[error("{host} has no address")]
    NoAddress { host: String },
}

/// The agent's resolver for endpoint hostnames.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// A resolver asking `upstream` (UDP, TCP when an answer is truncated).
    pub fn new(upstream: SocketAddr) -> Result<Self, hickory_resolver::net::NetError> {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut c| {
                c.port = upstream.port();
                c
            })
            .collect();
        let server = NameServerConfig::new(upstream.ip(), true, connections);
        let config = ResolverConfig::from_parts(None, vec![], vec![server]);
        let mut opts = ResolverOpts::default();
        opts.cache_size = CACHE_ENTRIES;
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        // The names are fully qualified ServiceEntry hosts: no search list,
        // no /etc/hosts of the node.
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.positive_max_ttl = Some(MAX_TTL);
        let inner = HickoryResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()?;
        Ok(Self { inner })
    }

    /// An address of `host`, in the family of `prefer_v4` when it has one.
    pub async fn resolve(&self, host: &str, prefer_v4: bool) -> Result<IpAddr, ResolveError> {
        let fqdn = if host.ends_with('.') {
            host.to_string()
        } else {
            format!("{host}.")
        };
        let name = hickory_resolver::proto::rr::Name::from_ascii(&fqdn).map_err(|_| {
            ResolveError::BadName {
                host: host.to_string(),
            }
        })?;
        let lookup = self
            .inner
            .lookup_ip(name)
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_string(),
                source,
            })?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        ips.iter()
            .find(|ip| ip.is_ipv4() == prefer_v4)
            .or(ips.first())
            .copied()
            .ok_or_else(|| ResolveError::NoAddress {
                host: host.to_string(),
            })
    }
}
