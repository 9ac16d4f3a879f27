//! The router (`envoy.filters.http.router`): answers redirect and direct
//! routes; forwards the rest — rewrite, header edits, cluster pick, hash,
//! mirrors, then attempts under the route timeout with retries — and
//! applies the response header edits.
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http::{request::Parts, HeaderValue, Request, Response, StatusCode};
use tower::Service;

use super::{
    buffer::Replay,
    dice::Dice,
    exchange::Exchange,
    hash,
    idle::IdleBody,
    pick::pick,
    reply,
    retry::{self, Outcome},
    rewrite,
};
use crate::{
    body::Body,
    config::{
        action::DEFAULT_ROUTE_TIMEOUT,
        table::{Action, Forward, Mirror, Route, WeightedTarget},
    },
    upstream::{SendContext, Upstream, UpstreamError, UpstreamResponse},
};

/// Propagates traces on upstream-bound requests (telemetry's
/// `trace::continue_trace`), returning the span for the record.
pub type TraceFn = Arc<dyn Fn(&mut http::HeaderMap) -> super::exchange::TraceSpan + Send + Sync>;

#[derive(Clone)]
pub struct Router {
    pub upstream: Arc<dyn Upstream>,
    pub dice: Arc<Dice>,
    pub trace: Option<TraceFn>,
    /// Largest request body held for retries and mirrors.
    pub max_buffer: usize,
    /// Envoy's `stream_idle_timeout`.
    pub stream_idle: std::time::Duration,
}

impl Service<Request<Body>> for Router {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let ex = Exchange::of(&mut req);
        let this = self.clone();
        Box::pin(async move {
            let Some(route) = ex.route() else {
                ex.flag("NR");
                return Ok(reply::local_for(&req, StatusCode::NOT_FOUND, ""));
            };
            let resp = match &route.action {
                Action::Redirect(r) => rewrite::redirect_response(r, &route.matcher, &req),
                Action::Direct { status, body } => rewrite::direct_response(*status, body),
                Action::Forward(f) => this.forward(&route, f, req, ex).await,
            };
            Ok(resp)
        })
    }
}

/// What the last attempt left.
enum Final {
    Response(UpstreamResponse),
    Error(UpstreamError),
    Timeout,
    /// No route timeout, and nothing came for [`STREAM_IDLE_TIMEOUT`].
    Idle,
}

impl Router {
    async fn forward(
        &self,
        route: &Arc<Route>,
        f: &Forward,
        req: Request<Body>,
        ex: Arc<Exchange>,
    ) -> Response<Body> {
        let grpc = reply::is_grpc(req.headers());
        let (cluster, target) = pick(&f.clusters, &self.dice);
        let cluster: Arc<str> = Arc::from(cluster);
        let hash = hash::compute(&f.hash, &req, ex.downstream.peer.ip);
        let (mut parts, body) = req.into_parts();
        self.prepare(route, f, target, &mut parts, &ex);

        // Streamed to the first attempt, kept (bounded) for retries and mirrors.
        let mut replay = Replay::new(body, self.max_buffer);
        let mirrors: Vec<&Mirror> = f
            .mirrors
            .iter()
            .filter(|m| self.dice.chance(m.fraction))
            .collect();

        let started = tokio::time::Instant::now();
        let attempts = self.attempts(&cluster, f, &parts, &mut replay, hash, &ex);
        let last = match f.timeout {
            Some(t) => match tokio::time::timeout(t, attempts).await {
                Ok(last) => last,
                Err(_) => Final::Timeout,
            },
            None => match tokio::time::timeout(self.stream_idle, attempts).await {
                Ok(last) => last,
                Err(_) => Final::Idle,
            },
        };
        // Mirrors go once the body is known whole (fire and forget).
        if !mirrors.is_empty() {
            if replay.complete() {
                let bound = f.timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
                for m in mirrors {
                    self.mirror(m, &parts, &mut replay, hash, bound);
                }
            } else {
                tracing::debug!(cluster = %cluster, "request body not replayable; not mirrored");
            }
        }
        let mut resp = match last {
            Final::Response(r) => {
                ex.set_upstream(cluster.clone(), r.workload.clone());
                let idle = self.stream_idle;
                let mut resp = r
                    .response
                    .map(|b| crate::body::boxed(IdleBody::new(b, idle)));
                rewrite::strip_hop_by_hop(resp.headers_mut());
                // As Envoy: time until the answering attempt's headers.
                resp.headers_mut().insert(
                    "x-envoy-upstream-service-time",
                    HeaderValue::from(started.elapsed().as_millis() as u64),
                );
                resp
            }
            Final::Error(e) => {
                ex.set_upstream(cluster.clone(), None);
                ex.flag(e.flag());
                tracing::debug!(cluster = %cluster, error = %e, "upstream failed");
                reply::local(grpc, e.status(), &local_text(&e))
            }
            Final::Timeout => {
                ex.set_upstream(cluster.clone(), None);
                ex.flag("UT");
                reply::local(
                    grpc,
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout",
                )
            }
            Final::Idle => {
                // Envoy: 408 and `SI` when the stream idles out before the
                // response headers.
                ex.set_upstream(cluster.clone(), None);
                ex.flag("SI");
                reply::local(grpc, StatusCode::REQUEST_TIMEOUT, "stream timeout")
            }
        };
        if let Some(t) = target {
            t.response_edits.apply(resp.headers_mut());
        }
        for e in &route.response_edits {
            e.apply(resp.headers_mut());
        }
        resp
    }

    /// Rewrites, header edits and trace propagation on the upstream request.
    fn prepare(
        &self,
        route: &Route,
        f: &Forward,
        target: Option<&WeightedTarget>,
        parts: &mut Parts,
        ex: &Exchange,
    ) {
        let mut req = Request::from_parts(
            std::mem::replace(parts, Request::new(()).into_parts().0),
            (),
        );
        rewrite::strip_hop_by_hop(req.headers_mut());
        let rewritten = {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            rewrite::rewritten_path(f, &route.matcher, pq)
                .map(|path| (path, HeaderValue::from_str(pq).ok()))
        };
        if let Some((path, original)) = rewritten {
            if let Some(v) = original {
                req.headers_mut().insert("x-envoy-original-path", v);
            }
            rewrite::set_path(&mut req, &path);
        }
        let host = target
            .and_then(|t| t.host_rewrite.as_deref())
            .or(f.host_rewrite.as_deref());
        if let Some(host) = host {
            rewrite::set_host(&mut req, host);
        } else if req.headers().get(http::header::HOST).is_none() {
            // h2 downstreams carry the authority in the URI only.
            let authority = req.uri().authority().map(|a| a.as_str());
            if let Some(v) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        // Origin form for the upstream side; the authority is in `host`.
        // (The path is shared, not copied.)
        if req.uri().authority().is_some() {
            let mut uri = std::mem::take(req.uri_mut()).into_parts();
            uri.scheme = None;
            uri.authority = None;
            *req.uri_mut() = http::Uri::from_parts(uri).unwrap_or_default();
        }
        if let Some(t) = target {
            t.request_edits.apply(req.headers_mut());
        }
        for e in &route.request_edits {
            e.apply(req.headers_mut());
        }
        if let Some(trace) = &self.trace {
            ex.set_span(Some(trace(req.headers_mut())));
        }
        *parts = req.into_parts().0;
    }

    /// Fire-and-forget copy to the mirror cluster, host suffixed `-shadow`.
    /// The whole exchange (response body drained, never kept) is abandoned
    /// after `bound`: the route's timeout, else Envoy's default, so a
    /// mirror never outlives its request by more than that.
    fn mirror(
        &self,
        m: &Mirror,
        parts: &Parts,
        replay: &mut Replay,
        hash: Option<u64>,
        bound: Duration,
    ) {
        let Some(body) = replay.body() else { return };
        let mut req = Request::from_parts(parts.clone(), body);
        if m.shadow_suffix {
            let host = super::select::request_host(&req);
            rewrite::set_host(&mut req, &shadow_host(&host));
        }
        let cluster = m.cluster.clone();
        let fut = self.upstream.send(
            &cluster,
            req,
            SendContext {
                hash,
                previous_hosts: Vec::new(),
            },
        );
        tokio::spawn(async move {
            let exchange = async {
                match fut.await {
                    Ok(r) => drain(r.response.into_body()).await,
                    Err(e) => tracing::debug!(cluster = %cluster, error = %e, "mirror failed"),
                }
            };
            if tokio::time::timeout(bound, exchange).await.is_err() {
                tracing::debug!(cluster = %cluster, ?bound, "mirror abandoned: timed out");
            }
        });
    }

    /// Attempts until a response that is not retried, retries or the
    /// cluster's retry budget run out.
    async fn attempts(
        &self,
        cluster: &Arc<str>,
        f: &Forward,
        parts: &Parts,
        replay: &mut Replay,
        hash: Option<u64>,
        ex: &Exchange,
    ) -> Final {
        {
            let policy = f.retry.as_ref();
            let mut retries_left = match policy {
                Some(p) => p.num_retries,
                _ => 0,
            };
            let mut previous_hosts: Vec<SocketAddr> = Vec::new();
            let mut n = 0u32;
            loop {
                let Some(body) = replay.body() else {
                    return Final::Error(UpstreamError::Reset("request body already sent".into()));
                };
                let req = Request::from_parts(parts.clone(), body);
                let ctx = SendContext {
                    hash,
                    previous_hosts: if policy.is_some_and(|p| p.previous_hosts) {
                        previous_hosts.clone()
                    } else {
                        Vec::new()
                    },
                };
                let send = self.upstream.send(cluster, req, ctx);
                let outcome = match policy.and_then(|p| p.per_try_timeout) {
                    Some(t) => match tokio::time::timeout(t, send).await {
                        Ok(r) => classify(r),
                        Err(_) => Outcome::PerTryTimeout,
                    },
                    None => classify(send.await),
                };
                let retriable = policy.is_some_and(|p| match &outcome {
                    Outcome::Response(r, status) => {
                        retry::retriable_response(p, *status, r.response.headers())
                    }
                    Outcome::Error(e) => retry::retriable_error(p, e),
                    Outcome::PerTryTimeout => retry::retriable_timeout(p),
                });
                let last = match outcome {
                    Outcome::Response(r, _) => {
                        previous_hosts.push(r.endpoint);
                        Final::Response(r)
                    }
                    Outcome::Error(e) => Final::Error(e),
                    Outcome::PerTryTimeout => Final::Timeout,
                };
                if !retriable {
                    return last;
                }
                if retries_left == 0 {
                    if policy.is_some_and(|p| p.num_retries > 0) {
                        ex.flag("URX");
                    }
                    return last;
                }
                if !replay.replayable() {
                    tracing::debug!(cluster = %**cluster, "request body too large to retry");
                    return last;
                }
                let Some(_permit) = self.upstream.retry_permit(cluster) else {
                    tracing::debug!(cluster = %**cluster, "retry budget exhausted");
                    return last;
                };
                drop(last);
                retries_left -= 1;
                let wait = policy.map_or(Duration::ZERO, |p| retry::backoff(p, n, &self.dice));
                n += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn classify(r: Result<UpstreamResponse, UpstreamError>) -> Outcome<UpstreamResponse> {
    match r {
        Ok(r) => {
            let status = r.response.status();
            Outcome::Response(r, status)
        }
        Err(e) => Outcome::Error(e),
    }
}

/// Envoy's local reply texts for upstream failures.
fn local_text(e: &UpstreamError) -> String {
    match e {
        UpstreamError::NoHealthyUpstream => "no healthy upstream".into(),
        UpstreamError::Overflow(_) => "upstream connect error or disconnect/reset before headers. reset reason: overflow".into(),
        UpstreamError::ConnectFailure(_) => "upstream connect error or disconnect/reset before headers. reset reason: connection failure".into(),
        UpstreamError::Reset(_) => "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
        UpstreamError::RefusedStream(_) => "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset".into(),
        UpstreamError::UnknownCluster(_) => "cluster not found".into(),
    }
}

/// `reviews:9080` → `reviews-shadow:9080`.
pub fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.is_empty() => format!("{h}-shadow:{p}"),
        _ => format!("{host}-shadow"),
    }
}

/// Reads a body to its end, discarding every frame.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}
