//! Request-shape tests: origin-form URIs, trace propagation into the
//! record, and request bodies streamed (not pre-buffered) under retries.
use std::{sync::Arc, time::Duration};

use http::StatusCode;
use mesh_xds::proto::wkt;

use crate::config::{fault::FaultConfig, HttpFilter};
use crate::route::testing::*;

fn filters() -> Vec<HttpFilter> {
    vec![
        HttpFilter::Fault(Arc::new(FaultConfig::default())),
        HttpFilter::Router,
    ]
}

fn retrying(retry_on: &str, n: u32) -> envoy_types::pb::envoy::config::route::v3::RouteAction {
    let mut a = to_cluster("c");
    a.timeout = Some(wkt::Duration {
        seconds: 0,
        nanos: 0,
    });
    a.retry_policy = Some(envoy_types::pb::envoy::config::route::v3::RetryPolicy {
        retry_on: retry_on.into(),
        num_retries: Some(wkt::UInt32Value { value: n }),
        ..Default::default()
    });
    a
}

#[tokio::test]
async fn absolute_h2_uri_becomes_origin_form_with_host() {
    let h = harness(
        &active(
            &reviews(vec![route("a", prefix("/"), to_cluster("c"))]),
            filters(),
        ),
        1,
    );
    let req = http::Request::builder()
        .uri("http://reviews:9080/r?x=1")
        .version(http::Version::HTTP_2)
        .body(crate::body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::OK);
    let call = &h.upstream.calls()[0];
    assert_eq!(call.uri, "/r?x=1");
    assert_eq!(call.headers["host"], "reviews:9080");
}

#[tokio::test]
async fn trace_is_continued_on_the_upstream_request_and_recorded() {
    use tower::ServiceExt;
    let upstream = Arc::new(FakeUpstream::default());
    let recorder = Arc::new(Recorder::default());
    let mut deps = crate::route::Deps::new(upstream.clone());
    deps.observer = recorder.clone();
    deps.trace = Some(Arc::new(|h: &mut http::HeaderMap| {
        h.insert("x-traced", "1".parse().unwrap());
        crate::telemetry::trace::continue_trace(h)
    }));
    let cfg = active(
        &reviews(vec![route("t", prefix("/"), to_cluster("c"))]),
        filters(),
    );
    let svc = crate::route::build(&cfg, &deps);
    let req = http::Request::builder()
        .uri("/")
        .header("host", "reviews:9080")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(crate::body::empty())
        .unwrap();
    let Ok(resp) = svc.oneshot(req).await;
    crate::route::buffer::collect(resp.into_body())
        .await
        .unwrap();
    assert_eq!(upstream.calls()[0].headers["x-traced"], "1");
    let rec = &recorder.records()[0];
    assert_eq!(
        rec.span.as_ref().map(|s| s.trace_id_hex()).as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(rec.response_bytes, "c /".len() as u64);
}

#[tokio::test]
async fn streaming_body_reaches_upstream_before_it_ends_even_with_retries() {
    use futures::StreamExt;
    let h = harness(
        &active(
            &reviews(vec![route("s", prefix("/"), retrying("5xx", 2))]),
            filters(),
        ),
        1,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(|b| Ok::<_, crate::body::BoxError>(http_body::Frame::data(b)));
    let req = http::Request::builder()
        .method("POST")
        .uri("/stream")
        .header("host", "reviews:9080")
        .header("content-type", "application/grpc")
        .body(crate::body::boxed(http_body_util::StreamBody::new(stream)))
        .unwrap();
    let driver = async {
        tx.send(bytes::Bytes::from("first")).unwrap();
        // The upstream has the request while the client is still sending.
        while h.upstream.calls().is_empty() {
            tokio::task::yield_now().await;
        }
        tx.send(bytes::Bytes::from("-second")).unwrap();
        drop(tx);
    };
    // A guard, not a timing assertion: pre-buffering would hang here.
    let ((status, _, _), ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(h.send(req), driver)
    })
    .await
    .expect("the body was not streamed");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&h.upstream.calls()[0].body[..], b"first-second");
}
