//! The compiled routing model: a [`RouteTable`] of virtual hosts indexed by
//! domain, each with ordered routes. Immutable once built; an update builds
//! a new one (see `store`).
use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use regex::Regex;

use super::{
    fault::FaultConfig,
    headers::HeaderEdits,
    matcher::{HeaderMatcher, QueryMatcher, RequestView},
    percent::Fraction,
    rbac::RbacRules,
};

/// How the path is matched.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    /// `path_separated_prefix`: the prefix followed by `/` or the end.
    SeparatedPrefix(String),
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query: Vec<QueryMatcher>,
    /// `filter_metadata["mesh"]["source_ips"]`: the downstream source IP
    /// must be one of these (Istio `sourceLabels`/`sourceNamespace`).
    pub source_ips: Option<Vec<IpAddr>>,
}

impl RouteMatch {
    pub fn matches(&self, req: &RequestView<'_>, source: Option<IpAddr>) -> bool {
        let path = req.path_only();
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => starts_with(path, p, self.case_sensitive),
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(r) => r.is_match(path),
            PathMatch::SeparatedPrefix(p) => {
                starts_with(path, p, self.case_sensitive)
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
        };
        path_ok
            && self.headers.iter().all(|h| h.matches(req))
            && self.query.iter().all(|q| q.matches(req))
            && self
                .source_ips
                .as_ref()
                .is_none_or(|ips| source.is_some_and(|s| ips.contains(&s)))
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.path {
            PathMatch::Prefix(p) => format!("prefix={p}"),
            PathMatch::Exact(p) => format!("path={p}"),
            PathMatch::Regex(r) => format!("regex={}", &r.as_str()[4..r.as_str().len() - 2]),
            PathMatch::SeparatedPrefix(p) => format!("path_separated_prefix={p}"),
        }];
        if !self.case_sensitive {
            parts.push("ignore_case".into());
        }
        parts.extend(self.headers.iter().map(HeaderMatcher::describe));
        parts.extend(self.query.iter().map(QueryMatcher::describe));
        if let Some(ips) = &self.source_ips {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            parts.push(format!("source_ips={}", ips.join(",")));
        }
        parts.join(" ")
    }
}

fn starts_with(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        path.starts_with(prefix)
    } else {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }
}

/// One target of `weighted_clusters`, with its own header edits.
#[derive(Debug, Clone)]
pub struct WeightedTarget {
    pub cluster: Arc<str>,
    pub weight: u32,
    pub request_edits: HeaderEdits,
    pub response_edits: HeaderEdits,
    pub host_rewrite: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Clusters {
    One(Arc<str>),
    Weighted(Vec<WeightedTarget>),
}

/// Envoy `retry_on` classes as bits.
pub mod retry_on {
    pub const X5XX: u32 = 1;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const CONNECT_FAILURE: u32 = 1 << 2;
    pub const REFUSED_STREAM: u32 = 1 << 3;
    pub const RESET: u32 = 1 << 4;
    pub const RETRIABLE_4XX: u32 = 1 << 5;
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;
    pub const GRPC_CANCELLED: u32 = 1 << 7;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 8;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 9;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 10;
    pub const GRPC_INTERNAL: u32 = 1 << 11;

    /// Name → bit; None for names the waypoint does not know.
    pub fn parse(name: &str) -> Option<u32> {
        Some(match name {
            "5xx" => X5XX,
            "gateway-error" => GATEWAY_ERROR,
            "connect-failure" => CONNECT_FAILURE,
            "refused-stream" => REFUSED_STREAM,
            "reset" | "reset-before-request" => RESET,
            "retriable-4xx" => RETRIABLE_4XX,
            "retriable-status-codes" => RETRIABLE_STATUS_CODES,
            "cancelled" => GRPC_CANCELLED,
            "deadline-exceeded" => GRPC_DEADLINE_EXCEEDED,
            "resource-exhausted" => GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => GRPC_UNAVAILABLE,
            "internal" => GRPC_INTERNAL,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Bits of [`retry_on`].
    pub retry_on: u32,
    /// As configured, for dumps.
    pub retry_on_text: String,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// `envoy.retry_host_predicates.previous_hosts`.
    pub previous_hosts: bool,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone)]
pub enum HashPolicy {
    Header(String),
    Cookie(String),
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone)]
pub struct HashRule {
    pub policy: HashPolicy,
    pub terminal: bool,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub cluster: Arc<str>,
    pub fraction: Fraction,
    /// Append `-shadow` to the host (unless disabled).
    pub shadow_suffix: bool,
}

#[derive(Debug, Clone)]
pub struct Forward {
    pub clusters: Clusters,
    /// None: no timeout (`0s`); Envoy's default when unset is 15 s.
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub host_rewrite: Option<String>,
    pub hash: Vec<HashRule>,
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone)]
pub enum PathRedirect {
    Keep,
    Path(String),
    Prefix(String),
    Regex(Regex, String),
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: PathRedirect,
    pub status: u16,
    pub strip_query: bool,
}

#[derive(Debug, Clone)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    Direct { status: u16, body: Bytes },
}

/// Per-filter overrides (`typed_per_filter_config`) of a route or vhost.
#[derive(Debug, Clone, Default)]
pub struct FilterOverrides {
    pub fault: Option<Arc<FaultConfig>>,
    /// By filter name; `None` disables that RBAC filter here.
    pub rbac: HashMap<String, Option<Arc<RbacRules>>>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: Action,
    /// Route, then vhost, then route-config edits, concatenated in the
    /// order Envoy applies them (most specific last wins for `set`).
    pub request_edits: Vec<HeaderEdits>,
    pub response_edits: Vec<HeaderEdits>,
    pub overrides: FilterOverrides,
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Arc<Route>>,
    /// Vhost-level overrides, used when the route has none.
    pub overrides: FilterOverrides,
    /// `require_tls` `ALL` or `EXTERNAL_ONLY`: a request that came in
    /// plain (not over TLS, not in an HBONE tunnel) gets a 301 to
    /// `https://` before routing.
    pub require_tls: bool,
}

impl VirtualHost {
    /// First matching route wins.
    pub fn find(&self, req: &RequestView<'_>, source: Option<IpAddr>) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matcher.matches(req, source))
    }

    /// The service FQDN this vhost stands for (`<fqdn>:<port>` → fqdn).
    pub fn service(&self) -> &str {
        self.name.rsplit_once(':').map_or(&self.name, |(h, _)| h)
    }
}

/// All virtual hosts of one RouteConfiguration, with Envoy's domain
/// lookup: exact, then longest `*suffix`, then longest `prefix*`, then `*`.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub name: String,
    pub vhosts: Vec<Arc<VirtualHost>>,
    exact: HashMap<String, usize>,
    suffix: Vec<(String, usize)>,
    prefix: Vec<(String, usize)>,
    any: Option<usize>,
}

impl RouteTable {
    /// Builds the domain index; the first vhost naming a domain keeps it.
    pub fn new(name: String, vhosts: Vec<Arc<VirtualHost>>) -> Self {
        let mut t = RouteTable {
            name,
            ..Default::default()
        };
        for (i, vh) in vhosts.iter().enumerate() {
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    t.any.get_or_insert(i);
                } else if let Some(s) = d.strip_prefix('*') {
                    t.suffix.push((s.to_string(), i));
                } else if let Some(p) = d.strip_suffix('*') {
                    t.prefix.push((p.to_string(), i));
                } else {
                    t.exact.entry(d).or_insert(i);
                }
            }
        }
        t.suffix.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        t.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        t.vhosts = vhosts;
        t
    }

    /// The virtual host for `host` (`Host` / `:authority`, any case).
    pub fn select(&self, host: &str) -> Option<&Arc<VirtualHost>> {
        let host = host.to_ascii_lowercase();
        let i = self
            .exact
            .get(&host)
            .copied()
            .or_else(|| {
                self.suffix
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefix
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)?;
        self.vhosts.get(i)
    }
}
