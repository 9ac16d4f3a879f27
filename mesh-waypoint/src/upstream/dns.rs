//! DNS for `STRICT_DNS` / `LOGICAL_DNS` clusters: one hickory resolver
//! (the `--dns-upstream` server, else `/etc/resolv.conf`) whose cache
//! honours each record's TTL, and the refresh loop of one cluster:
//! resolve every name, hand the hosts to the cluster, sleep until the
//! earliest TTL lapses (`respect_dns_ttl`, at least
//! [`MIN_TTL_REFRESH`]) or `dns_refresh_rate`, and after a failure
//! `dns_failure_refresh_rate`, keeping the hosts a name had.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use hickory_resolver::{
    config::{NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::{RData, RecordType},
    TokioResolver,
};

use super::discovery::{DnsConfig, DnsTarget, Family, MIN_TTL_REFRESH};

/// Resolves names for DNS clusters.
pub struct DnsResolver {
    inner: TokioResolver,
}

/// The addresses of a name and until when they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addrs: Vec<IpAddr>,
    pub valid_until: Instant,
}

impl DnsResolver {
    /// Asks `upstream` (UDP, then TCP) or, when None, the servers of
    /// `/etc/resolv.conf`. Must run inside a Tokio runtime.
    pub fn new(upstream: Option<SocketAddr>) -> Result<Self, String> {
        let builder = match upstream {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system DNS configuration: {e}"))?,
        };
        let inner = builder
            .build()
            .map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(DnsResolver { inner })
    }

    async fn lookup(&self, host: &str, rt: RecordType) -> Result<Resolved, String> {
        let lookup = self
            .inner
            .lookup(host, rt)
            .await
            .map_err(|e| format!("{host} {rt}: {e}"))?;
        let addrs: Vec<IpAddr> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} {rt}: no address"));
        }
        Ok(Resolved {
            addrs,
            valid_until: lookup.valid_until(),
        })
    }

    /// The addresses of `host` for `family`; an IP literal is itself.
    pub async fn resolve(&self, host: &str, family: Family) -> Result<Resolved, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved {
                addrs: vec![ip],
                valid_until: Instant::now() + Duration::from_secs(365 * 24 * 3600),
            });
        }
        let (a, aaaa) = (RecordType::A, RecordType::AAAA);
        match family {
            Family::V4Only => self.lookup(host, a).await,
            Family::V6Only => self.lookup(host, aaaa).await,
            Family::V4Preferred => match self.lookup(host, a).await {
                Ok(r) => Ok(r),
                Err(_) => self.lookup(host, aaaa).await,
            },
            Family::Auto => match self.lookup(host, aaaa).await {
                Ok(r) => Ok(r),
                Err(_) => self.lookup(host, a).await,
            },
            Family::All => {
                let (v4, v6) = (self.lookup(host, a).await, self.lookup(host, aaaa).await);
                match (v4, v6) {
                    (Ok(mut r4), Ok(r6)) => {
                        r4.addrs.extend(r6.addrs);
                        r4.valid_until = r4.valid_until.min(r6.valid_until);
                        Ok(r4)
                    }
                    (Ok(r), Err(_)) | (Err(_), Ok(r)) => Ok(r),
                    (Err(e), Err(_)) => Err(e),
                }
            }
        }
    }
}

/// The state of one DNS cluster between two resolutions.
#[derive(Debug, Default)]
pub struct Resolutions {
    /// The hosts each name had at its last successful resolution.
    last: HashMap<DnsTarget, Vec<SocketAddr>>,
}

impl Resolutions {
    /// Resolves every name of `cfg` once: the cluster's hosts (STRICT: all
    /// addresses of all names; LOGICAL: the first) and how long to wait
    /// before the next round.
    pub async fn round(
        &mut self,
        resolver: &DnsResolver,
        cluster: &str,
        cfg: &DnsConfig,
    ) -> (Vec<SocketAddr>, Duration) {
        // With `respect_dns_ttl` the TTLs alone decide (the refresh rate
        // when no name resolved).
        let mut next = if cfg.respect_ttl {
            Duration::MAX
        } else {
            cfg.refresh
        };
        for t in &cfg.targets {
            match resolver.resolve(&t.host, cfg.family).await {
                Ok(r) => {
                    let mut addrs: Vec<SocketAddr> = r
                        .addrs
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, t.port))
                        .collect();
                    if cfg.logical {
                        addrs.truncate(1);
                    }
                    tracing::debug!(%cluster, host = %t.host, ?addrs, "resolved");
                    self.last.insert(t.clone(), addrs);
                    if cfg.respect_ttl {
                        let ttl = r.valid_until.saturating_duration_since(Instant::now());
                        next = next.min(ttl.max(MIN_TTL_REFRESH));
                    }
                }
                Err(e) => {
                    tracing::warn!(%cluster, host = %t.host, error = %e, "DNS resolution failed; keeping the last hosts");
                    next = next.min(cfg.failure_refresh);
                }
            }
        }
        let hosts = cfg
            .targets
            .iter()
            .flat_map(|t| self.last.get(t).cloned().unwrap_or_default())
            .collect();
        if next == Duration::MAX {
            next = cfg.refresh;
        }
        (hosts, next)
    }
}
