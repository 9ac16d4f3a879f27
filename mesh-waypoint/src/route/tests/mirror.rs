//! Mirrors are bounded: a mirror that never answers, or never ends its
//! body, is abandoned after the route's timeout (Envoy's 15 s default
//! when the route has none, as Istio's `timeout: 0s` routes do).
use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::{core::v3::RuntimeFractionalPercent, route::v3::route_action::RequestMirrorPolicy},
    r#type::v3::FractionalPercent,
};
use futures::future::BoxFuture;
use http::StatusCode;
use mesh_xds::proto::wkt;
use tokio::sync::oneshot;

use crate::route::{testing::*, Deps, Proxy};
use crate::{
    body::Body,
    config::HttpFilter,
    upstream::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse},
};

/// `v1` answers at once; `mirror` answers headers, then a body that never
/// ends, and reports through `dropped` when the mirror exchange is dropped.
struct Upstreams {
    dropped: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl Upstream for Upstreams {
    fn send(
        &self,
        cluster: &str,
        _req: http::Request<Body>,
        _ctx: SendContext,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let endpoint = "127.0.0.1:1".parse().unwrap();
        if cluster != "mirror" {
            return Box::pin(async move {
                Ok(UpstreamResponse {
                    response: http::Response::new(crate::body::full("primary")),
                    endpoint,
                    workload: None,
                })
            });
        }
        let guard = self.dropped.lock().unwrap().take();
        let endless = futures::stream::unfold(guard, |g| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let frame = http_body::Frame::data(bytes::Bytes::from_static(b"more"));
            Some((Ok::<_, crate::body::BoxError>(frame), g))
        });
        Box::pin(async move {
            Ok(UpstreamResponse {
                response: http::Response::new(crate::body::boxed(http_body_util::StreamBody::new(
                    endless,
                ))),
                endpoint,
                workload: None,
            })
        })
    }

    fn retry_permit(&self, _cluster: &str) -> Option<RetryPermit> {
        None
    }
}

async fn mirror_lifetime(timeout: Option<wkt::Duration>) -> Duration {
    let mut a = to_cluster("v1");
    a.timeout = timeout;
    a.request_mirror_policies = vec![RequestMirrorPolicy {
        cluster: "mirror".into(),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: 0,
            }),
            runtime_key: String::new(),
        }),
        ..Default::default()
    }];
    let cfg = active(
        &reviews(vec![route("m", prefix("/"), a)]),
        vec![HttpFilter::Router],
    );
    let (tx, dropped) = oneshot::channel::<()>();
    let upstream = Arc::new(Upstreams {
        dropped: std::sync::Mutex::new(Some(tx)),
    });
    let proxy = Proxy::new(Arc::new(cfg), Deps::new(upstream));
    let start = tokio::time::Instant::now();
    let req = http::Request::builder()
        .uri("/r")
        .header("host", "reviews:9080")
        .body(crate::body::empty())
        .unwrap();
    assert_eq!(proxy.handle(req).await.status(), StatusCode::OK);
    // Resolves (with an error) once the mirror's body stream is dropped;
    // an hour of (paused) time means never.
    tokio::time::timeout(Duration::from_secs(3600), dropped)
        .await
        .expect("the mirror is never abandoned")
        .expect_err("the stream sends nothing; it is dropped");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_mirror_without_end_is_abandoned_after_the_route_timeout() {
    let three = Some(wkt::Duration {
        seconds: 3,
        nanos: 0,
    });
    assert_eq!(mirror_lifetime(three).await, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_mirror_on_a_route_without_timeout_is_abandoned_after_15s() {
    let disabled = Some(wkt::Duration {
        seconds: 0,
        nanos: 0,
    });
    assert_eq!(mirror_lifetime(disabled).await, Duration::from_secs(15));
}
