//! Test doubles for the request path: a scripted in-memory [`Upstream`],
//! a recording [`Observer`], and builders of Envoy route protos.
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use envoy_types::pb::envoy::config::route::v3::{
    route::Action as PbAction, route_action::ClusterSpecifier, route_match::PathSpecifier,
    Route as PbRoute, RouteAction, RouteConfiguration, RouteMatch as PbRouteMatch,
    VirtualHost as PbVirtualHost,
};
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};

use super::{dice::Dice, observe::Observer, Deps, HttpService};
use crate::{
    body::{self, Body},
    config::{route_config, ActiveConfig, HttpFilter},
    telemetry::RequestRecord,
    upstream::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse},
};

/// What the fake does for one attempt.
#[derive(Clone)]
pub enum Behavior {
    /// Answers this status with body `<cluster> <path>`.
    Status(u16),
    Error(UpstreamError),
    /// Never answers.
    Hang,
    /// Panics (a bug in the request path).
    Panic,
}

/// One attempt the fake saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub cluster: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub ctx: SendContext,
}

/// Scripted upstream: per cluster a queue of behaviors (then 200s).
pub struct FakeUpstream {
    pub calls: Arc<Mutex<Vec<Call>>>,
    script: Mutex<HashMap<String, VecDeque<Behavior>>>,
    /// Retry permits left; negative = unlimited.
    pub permits: AtomicI64,
}

impl Default for FakeUpstream {
    fn default() -> Self {
        FakeUpstream {
            calls: Arc::default(),
            script: Mutex::default(),
            permits: AtomicI64::new(-1),
        }
    }
}

impl FakeUpstream {
    pub fn script(&self, cluster: &str, behaviors: impl IntoIterator<Item = Behavior>) {
        self.script
            .lock()
            .unwrap()
            .entry(cluster.to_string())
            .or_default()
            .extend(behaviors);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, cluster: &str) -> usize {
        self.calls().iter().filter(|c| c.cluster == cluster).count()
    }
}

fn endpoint(n: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, (n % 250) as u8 + 1], 8080))
}

impl Upstream for FakeUpstream {
    fn send(
        &self,
        cluster: &str,
        req: Request<Body>,
        ctx: SendContext,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let behavior = self
            .script
            .lock()
            .unwrap()
            .get_mut(cluster)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Behavior::Status(200));
        let (parts, b) = req.into_parts();
        let mut calls = self.calls.lock().unwrap();
        let n = calls.len();
        calls.push(Call {
            cluster: cluster.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body: Bytes::new(),
            ctx,
        });
        drop(calls);
        let cluster = cluster.to_string();
        let path = parts.uri.path().to_string();
        let calls = self.calls.clone();
        Box::pin(async move {
            if let Ok(bytes) = super::buffer::collect(b).await {
                calls.lock().unwrap()[n].body = bytes;
            }
            match behavior {
                Behavior::Status(s) => {
                    let mut r = Response::new(body::full(format!("{cluster} {path}")));
                    *r.status_mut() = StatusCode::from_u16(s).unwrap();
                    r.headers_mut()
                        .insert("x-cluster", cluster.parse().unwrap());
                    Ok(UpstreamResponse {
                        response: r,
                        endpoint: endpoint(n),
                        workload: Some(Arc::from(format!("{cluster}-pod"))),
                    })
                }
                Behavior::Error(e) => Err(e),
                Behavior::Hang => std::future::pending().await,
                Behavior::Panic => panic!("upstream bug, on purpose"),
            }
        })
    }

    fn retry_permit(&self, _cluster: &str) -> Option<RetryPermit> {
        let left = self.permits.load(Ordering::SeqCst);
        if left == 0 {
            return None;
        }
        if left > 0 {
            self.permits.fetch_sub(1, Ordering::SeqCst);
        }
        Some(RetryPermit(Box::new(())))
    }
}

/// Keeps every record.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<RequestRecord>>);

impl Observer for Recorder {
    fn record(&self, record: RequestRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Recorder {
    pub fn records(&self) -> Vec<RequestRecord> {
        self.0.lock().unwrap().clone()
    }
}

// ---- Envoy proto builders ----

pub fn prefix(p: &str) -> PbRouteMatch {
    PbRouteMatch {
        path_specifier: Some(PathSpecifier::Prefix(p.into())),
        ..Default::default()
    }
}

pub fn exact(p: &str) -> PbRouteMatch {
    PbRouteMatch {
        path_specifier: Some(PathSpecifier::Path(p.into())),
        ..Default::default()
    }
}

pub fn to_cluster(c: &str) -> RouteAction {
    RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(c.into())),
        ..Default::default()
    }
}

pub fn route(name: &str, m: PbRouteMatch, a: RouteAction) -> PbRoute {
    PbRoute {
        name: name.into(),
        r#match: Some(m),
        action: Some(PbAction::Route(a)),
        ..Default::default()
    }
}

pub fn vhost(name: &str, domains: &[&str], routes: Vec<PbRoute>) -> PbVirtualHost {
    PbVirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

/// One vhost `reviews` (domains `reviews`, `reviews:9080`, `10.96.0.20:9080`).
pub fn reviews(routes: Vec<PbRoute>) -> RouteConfiguration {
    RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![vhost(
            "reviews.default.svc.cluster.local:9080",
            &["reviews", "reviews:9080", "10.96.0.20:9080"],
            routes,
        )],
        ..Default::default()
    }
}

pub fn active(rc: &RouteConfiguration, filters: Vec<HttpFilter>) -> ActiveConfig {
    ActiveConfig {
        listener: None,
        table: Arc::new(route_config::translate(rc).expect("valid route config")),
        filters,
        generation: 1,
    }
}

pub struct Harness {
    pub upstream: Arc<FakeUpstream>,
    pub recorder: Arc<Recorder>,
    pub svc: HttpService,
}

pub fn harness(cfg: &ActiveConfig, seed: u64) -> Harness {
    let upstream = Arc::new(FakeUpstream::default());
    let recorder = Arc::new(Recorder::default());
    let mut deps = Deps::new(upstream.clone());
    deps.observer = recorder.clone();
    deps.dice = Arc::new(Dice::seeded(seed));
    Harness {
        upstream,
        recorder,
        svc: super::build(cfg, &deps),
    }
}

impl Harness {
    /// Sends a GET to `reviews:9080` + `path`; returns status, headers, body.
    pub async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut b = Request::builder().uri(path).header("host", "reviews:9080");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body::empty()).unwrap()).await
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        use tower::ServiceExt;
        let Ok(resp) = self.svc.clone().oneshot(req).await;
        let (parts, b) = resp.into_parts();
        let bytes = super::buffer::collect(b).await.unwrap();
        (parts.status, parts.headers, bytes)
    }

    pub fn last_flags(&self) -> String {
        self.recorder
            .records()
            .last()
            .map(|r| r.flags.clone())
            .unwrap_or_default()
    }
}
