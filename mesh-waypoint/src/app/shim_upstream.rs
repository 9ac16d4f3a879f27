//! TEMPORARY stand-ins for the upstream/telemetry part (branch
//! i5-wp-upstream), with the constructor signatures of contract §6, so
//! this branch builds and runs end to end. The integrator deletes this
//! file and points `app::wiring` at `crate::upstream` / `crate::telemetry`.
//!
//! The shim ClusterManager is deliberately small: EDS endpoints only,
//! round robin (skipping `previous_hosts`), plain HTTP/1.1 over TCP, no
//! circuit breakers, outlier detection or HBONE.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, RwLock,
    },
};

use envoy_types::pb::envoy::config::core::v3::{address, socket_address::PortSpecifier};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use futures::future::BoxFuture;
use http::Request;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use mesh_xds::{XdsResource, XdsSnapshot, ENDPOINT_TYPE_URL};
use serde_json::json;

use crate::{
    body::{self, Body},
    telemetry::RequestRecord,
    upstream::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse},
};

pub struct UpstreamOptions {
    pub hbone: Option<Arc<mesh_hbone::HboneClient>>,
    pub identity: Option<mesh_hbone::Identity>,
}

/// Placeholder for the Address view.
#[derive(Debug, Default)]
pub struct Directory;

pub struct ClusterManager {
    endpoints: RwLock<HashMap<String, Vec<SocketAddr>>>,
    next: AtomicUsize,
    client: Client<HttpConnector, Body>,
}

impl ClusterManager {
    pub fn new(_opts: UpstreamOptions) -> Arc<Self> {
        Arc::new(ClusterManager {
            endpoints: RwLock::default(),
            next: AtomicUsize::new(0),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    pub fn apply(&self, snapshot: &XdsSnapshot) {
        let mut map = HashMap::new();
        for (name, r) in snapshot.resources(ENDPOINT_TYPE_URL) {
            let XdsResource::ClusterLoadAssignment(cla) = &*r.resource else {
                continue;
            };
            let addrs = cla
                .endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .filter_map(|e| match &e.host_identifier {
                    Some(HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
                    _ => None,
                })
                .filter_map(|a| match &a.address {
                    Some(address::Address::SocketAddress(s)) => match s.port_specifier {
                        Some(PortSpecifier::PortValue(p)) => {
                            Some(SocketAddr::new(s.address.parse().ok()?, p as u16))
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            map.insert(name.to_string(), addrs);
        }
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Sets one cluster's endpoints directly (tests).
    pub fn set_endpoints(&self, cluster: &str, addrs: Vec<SocketAddr>) {
        self.endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cluster.to_string(), addrs);
    }

    pub fn directory(&self) -> Arc<Directory> {
        Arc::new(Directory)
    }

    pub fn dump(&self) -> serde_json::Value {
        let map = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        let clusters: Vec<_> = names.iter().map(|n| json!({"name": n})).collect();
        let endpoints: Vec<_> = names
            .iter()
            .flat_map(|n| {
                map[*n].iter().map(
                    move |a| json!({"cluster": n, "address": a.to_string(), "health": "HEALTHY"}),
                )
            })
            .collect();
        json!({"clusters": clusters, "endpoints": endpoints})
    }
}

impl Upstream for ClusterManager {
    fn send(
        &self,
        cluster: &str,
        req: Request<Body>,
        ctx: SendContext,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let addrs = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .cloned();
        let Some(addrs) = addrs else {
            let c = cluster.to_string();
            return Box::pin(async move { Err(UpstreamError::UnknownCluster(c)) });
        };
        let fresh: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !ctx.previous_hosts.contains(a))
            .collect();
        let pool = if fresh.is_empty() { addrs } else { fresh };
        if pool.is_empty() {
            return Box::pin(async { Err(UpstreamError::NoHealthyUpstream) });
        }
        let endpoint = pool[self.next.fetch_add(1, Ordering::Relaxed) % pool.len()];
        let (mut parts, b) = req.into_parts();
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("http://{endpoint}{pq}").parse() {
            parts.uri = uri;
        }
        parts.version = http::Version::HTTP_11;
        let fut = self.client.request(Request::from_parts(parts, b));
        Box::pin(async move {
            match fut.await {
                Ok(resp) => Ok(UpstreamResponse {
                    response: resp.map(body::boxed),
                    endpoint,
                    workload: None,
                }),
                Err(e) if e.is_connect() => Err(UpstreamError::ConnectFailure(e.to_string())),
                Err(e) => Err(UpstreamError::Reset(e.to_string())),
            }
        })
    }

    fn retry_permit(&self, _cluster: &str) -> Option<RetryPermit> {
        Some(RetryPermit(Box::new(())))
    }
}

/// Shim of `upstream::validate`: accepts everything.
pub fn validate(_type_url: &str, _r: &XdsResource) -> Result<(), mesh_xds::FieldRejection> {
    Ok(())
}

/// Shim of `telemetry::TelemetryOptions` (same fields as there, minus
/// `export`; build it with `..Default::default()`).
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    pub otlp_endpoint: Option<String>,
    pub access_log: bool,
    pub workload_uid: String,
    pub workload_name: String,
    pub namespace: String,
}

/// Shim of `telemetry::Telemetry`: a request counter and a log line.
pub struct Telemetry {
    access_log: AtomicBool,
    requests: AtomicU64,
}

impl Telemetry {
    pub fn new(opts: TelemetryOptions) -> Arc<Self> {
        Arc::new(Telemetry {
            access_log: AtomicBool::new(opts.access_log),
            requests: AtomicU64::new(0),
        })
    }

    pub fn record(&self, r: &RequestRecord, _dir: &Directory) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.access_log.load(Ordering::Relaxed) {
            tracing::info!(target: "access", method = %r.method, path = %r.path, status = r.status,
                flags = %r.flags, cluster = ?r.cluster, duration_ms = r.duration.as_millis() as u64, "request");
        }
    }

    pub fn encode_metrics(&self) -> String {
        format!(
            "# TYPE mesh_waypoint_requests_total counter\nmesh_waypoint_requests_total {}\n# EOF\n",
            self.requests.load(Ordering::Relaxed)
        )
    }

    pub fn set_access_log(&self, on: bool) {
        self.access_log.store(on, Ordering::Relaxed);
    }
}

pub mod trace {
    /// Shim of `telemetry::trace::Span`: the incoming W3C trace id only.
    #[derive(Debug, Clone)]
    pub struct Span {
        pub trace_id: [u8; 16],
    }

    impl Span {
        pub fn trace_id_hex(&self) -> String {
            self.trace_id.iter().map(|b| format!("{b:02x}")).collect()
        }
    }

    /// Shim: keeps an incoming `traceparent`'s trace id (zeros when none);
    /// rewrites nothing.
    pub fn continue_trace(headers: &mut http::HeaderMap) -> Span {
        let mut trace_id = [0u8; 16];
        let hex = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|tp| tp.split('-').nth(1))
            .filter(|h| h.len() == 32);
        if let Some(hex) = hex {
            for (i, b) in trace_id.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
        }
        Span { trace_id }
    }
}
