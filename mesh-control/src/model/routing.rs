//! `networking.istio.io` VirtualService and DestinationRule as the control
//! plane holds them after validation: every field the L7 waypoint will
//! act on, typed (durations parsed, percentages checked, regexes
//! compiled once), still in Istio's vocabulary. Fields Istio defines that
//! nothing reads yet (`corsPolicy`, `tls`, `localityLbSetting`, …) are kept
//! as written; fields this version does not know (a newer Istio's) are
//! kept by name in `unknown`, so users' YAML is never rejected for them.
use std::{collections::BTreeMap, time::Duration};

use serde_yaml::Value;

/// A percentage 0–100 (`percentage.value`, `mirrorPercentage.value`),
/// finite; `Eq` holds because NaN is never stored.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Eq for Percent {}

impl Percent {
    /// `None` unless `0.0 <= value <= 100.0`.
    pub fn new(value: f64) -> Option<Self> {
        (0.0..=100.0).contains(&value).then_some(Self(value))
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

/// Istio's `StringMatch`. Regexes are RE2 syntax (Envoy's), checked with
/// the `regex` crate, whose syntax is RE2's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// `{}` under `headers` / `queryParams` / `withoutHeaders`: the header
    /// (parameter) is present, with any value.
    Present,
}

/// `destination` of a route, a mirror, a TCP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// As written (`reviews`, `reviews.shop.svc.cluster.local`).
    pub host: String,
    pub subset: Option<String>,
    /// `port.number`.
    pub port: Option<u16>,
}

/// `headers.request` / `headers.response`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// `headers` of an HTTP route or of one of its destinations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    pub request: HeaderOperations,
    pub response: HeaderOperations,
}

/// One `http[].match[]` entry: its conditions are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpMatch {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: BTreeMap<String, StringMatch>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub without_headers: BTreeMap<String, StringMatch>,
    pub port: Option<u16>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
    pub ignore_uri_case: bool,
    pub unknown: Vec<String>,
}

/// One `http[].route[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    /// Absent: 0 when there are several destinations, all traffic when it
    /// is the only one (as in Istio).
    pub weight: Option<u32>,
    pub headers: Option<Headers>,
}

/// `http[].redirect`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redirect {
    pub uri: Option<String>,
    /// Replaces the matched prefix (Envoy's `prefix_rewrite`); no
    /// VirtualService field sets it: HTTPRoute's `ReplacePrefixMatch` does.
    pub uri_prefix: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub port: Option<u16>,
    /// 3xx; Istio's default is 301.
    pub redirect_code: Option<u16>,
    /// `derivePort` and newer fields, as written.
    pub other: BTreeMap<String, Value>,
}

/// `http[].rewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    /// `uriRegexRewrite{match, rewrite}`, the regex checked.
    pub uri_regex: Option<(String, String)>,
    pub unknown: Vec<String>,
}

/// `http[].retries`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retries {
    /// 0 disables retries.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    /// As written (`5xx,retriable-4xx,gateway-error`), each policy checked.
    pub retry_on: Option<String>,
    pub retry_remote_localities: Option<bool>,
}

/// `http[].fault.delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultDelay {
    pub fixed_delay: Duration,
    pub percentage: Option<Percent>,
    /// Deprecated integer `percent`.
    pub percent: Option<u32>,
}

/// What `http[].fault.abort` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortStatus {
    Http(u16),
    Grpc(String),
    Http2Error(String),
}

/// `http[].fault.abort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultAbort {
    pub status: AbortStatus,
    pub percentage: Option<Percent>,
}

/// `http[].fault`: at least one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

/// One `spec.http[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRoute {
    pub name: Option<String>,
    /// Empty: every request.
    pub matches: Vec<HttpMatch>,
    pub route: Vec<HttpRouteDestination>,
    pub redirect: Option<Redirect>,
    /// `directResponse`, as written.
    pub direct_response: Option<Value>,
    /// `delegate{name, namespace}`, as written.
    pub delegate: Option<Value>,
    pub rewrite: Option<Rewrite>,
    pub timeout: Option<Duration>,
    pub retries: Option<Retries>,
    pub fault: Option<Fault>,
    pub mirror: Option<Destination>,
    pub mirror_percentage: Option<Percent>,
    /// `mirrors`, `mirrorPercent` (deprecated), as written.
    pub other_mirrors: BTreeMap<String, Value>,
    /// `corsPolicy`, as written.
    pub cors_policy: Option<Value>,
    pub headers: Option<Headers>,
    pub unknown: Vec<String>,
}

/// One `spec.tcp[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpRoute {
    /// `match[].port`, one per match entry (`None`: any port); the other
    /// L4 match fields (`destinationSubnets`, `sourceLabels`, …) are kept
    /// by name in `unknown`.
    pub match_ports: Vec<Option<u16>>,
    pub route: Vec<(Destination, Option<u32>)>,
    pub unknown: Vec<String>,
}

/// One `spec.tls[].match[]` entry (Istio's `TLSMatchAttributes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsMatch {
    /// `sniHosts`: at least one (`*.example.com` wildcards allowed).
    pub sni_hosts: Vec<String>,
    /// `port`; `None`: any port.
    pub port: Option<u16>,
    /// `gateways`; empty: the VirtualService's.
    pub gateways: Vec<String>,
}

/// One `spec.tls[]` entry: TLS passed through, routed by SNI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsRoute {
    /// At least one.
    pub matches: Vec<TlsMatch>,
    pub route: Vec<(Destination, Option<u32>)>,
    /// Match and entry fields the mesh does not act on
    /// (`destinationSubnets`, `sourceLabels`, …), by name.
    pub unknown: Vec<String>,
}

/// A validated VirtualService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualService {
    pub name: String,
    pub namespace: String,
    /// File it was read from (for findings).
    pub file: String,
    /// Empty: a delegate VirtualService.
    pub hosts: Vec<String>,
    /// Empty: `mesh`.
    pub gateways: Vec<String>,
    /// Namespaces that see it ([`super::visibility`]); empty: all.
    pub export_to: Vec<String>,
    pub http: Vec<HttpRoute>,
    pub tcp: Vec<TcpRoute>,
    pub tls: Vec<TlsRoute>,
    pub unknown: Vec<String>,
}

impl VirtualService {
    /// `VirtualService <namespace>/<name>`.
    pub fn resource(&self) -> String {
        format!("VirtualService {}/{}", self.namespace, self.name)
    }

    /// True when namespace `viewer` sees it (`exportTo`).
    pub fn exported_to(&self, viewer: &str) -> bool {
        super::visibility::exported_to(&self.export_to, &self.namespace, viewer)
    }
}

/// `loadBalancer.simple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleLb {
    Unspecified,
    RoundRobin,
    Random,
    /// `LEAST_REQUEST`, and its deprecated spelling `LEAST_CONN`.
    LeastRequest,
    Passthrough,
}

/// What `consistentHash` hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    HttpHeaderName(String),
    HttpCookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    UseSourceIp,
    HttpQueryParameterName(String),
}

/// `loadBalancer.consistentHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentHash {
    pub key: HashKey,
    /// `ringHash.minimumRingSize`, or the deprecated `minimumRingSize`.
    pub ring_hash_minimum_ring_size: Option<u64>,
    /// `maglev.tableSize`.
    pub maglev_table_size: Option<u64>,
}

/// `trafficPolicy.loadBalancer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadBalancer {
    pub simple: Option<SimpleLb>,
    pub consistent_hash: Option<ConsistentHash>,
    /// `localityLbSetting`, `warmupDurationSecs`, newer fields, as written.
    pub other: BTreeMap<String, Value>,
}

/// `connectionPool.tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpSettings {
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    /// `tcpKeepalive`, `maxConnectionDuration`, …, as written.
    pub other: BTreeMap<String, Value>,
}

/// `connectionPool.http`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpSettings {
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    pub idle_timeout: Option<Duration>,
    /// `h2UpgradePolicy`, `useClientProtocol`, …, as written.
    pub other: BTreeMap<String, Value>,
}

/// `trafficPolicy.connectionPool`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionPool {
    pub tcp: Option<TcpSettings>,
    pub http: Option<HttpSettings>,
}

/// `trafficPolicy.outlierDetection`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors`.
    pub consecutive_5xx_errors: Option<u32>,
    /// `consecutiveGatewayErrors`, or the deprecated `consecutiveErrors`
    /// when only that is written (istiod's translation: 502/503/504 only).
    pub consecutive_gateway_errors: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub min_health_percent: Option<u32>,
    /// `splitExternalLocalOriginErrors`, …, as written.
    pub other: BTreeMap<String, Value>,
}

/// The settings a traffic policy and each of its `portLevelSettings` share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicySettings {
    pub load_balancer: Option<LoadBalancer>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls`, as written.
    pub tls: Option<Value>,
}

/// `trafficPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrafficPolicy {
    pub settings: PolicySettings,
    /// `portLevelSettings[]`, by `port.number`.
    pub port_level: Vec<(u16, PolicySettings)>,
    /// `tunnel`, `proxyProtocol`, newer fields, by name.
    pub unknown: Vec<String>,
}

/// `subsets[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub traffic_policy: Option<TrafficPolicy>,
}

/// A validated DestinationRule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRule {
    pub name: String,
    pub namespace: String,
    pub file: String,
    /// As written.
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    pub subsets: Vec<Subset>,
    /// Namespaces that see it ([`super::visibility`]); empty: all.
    pub export_to: Vec<String>,
    /// `workloadSelector.matchLabels`.
    pub workload_selector: Option<BTreeMap<String, String>>,
    pub unknown: Vec<String>,
}

impl DestinationRule {
    /// `DestinationRule <namespace>/<name>`.
    pub fn resource(&self) -> String {
        format!("DestinationRule {}/{}", self.namespace, self.name)
    }

    /// True when namespace `viewer` sees it (`exportTo`).
    pub fn exported_to(&self, viewer: &str) -> bool {
        super::visibility::exported_to(&self.export_to, &self.namespace, viewer)
    }
}

/// A validated ServiceEntry (also kept raw): its hosts, who sees it and
/// the rest of its spec; [`super::Service`]s are built from it
/// ([`super::service_entry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub name: String,
    pub namespace: String,
    pub file: String,
    /// `metadata.labels` (`istio.io/use-waypoint`, …).
    pub labels: BTreeMap<String, String>,
    /// As written: FQDNs, short names or `*.`-prefixed wildcards.
    pub hosts: Vec<String>,
    /// Namespaces that see it ([`super::visibility`]); empty: all.
    pub export_to: Vec<String>,
    pub spec: super::service_entry::ServiceEntrySpec,
}

impl ServiceEntry {
    /// `ServiceEntry <namespace>/<name>`.
    pub fn resource(&self) -> String {
        format!("ServiceEntry {}/{}", self.namespace, self.name)
    }

    /// `<namespace>/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// True when namespace `viewer` sees it (`exportTo`).
    pub fn exported_to(&self, viewer: &str) -> bool {
        super::visibility::exported_to(&self.export_to, &self.namespace, viewer)
    }
}
