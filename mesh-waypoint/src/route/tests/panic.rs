//! A panic in the request path: the client gets a 500, the next request
//! is served, and liveness counts it.
use std::sync::Arc;

use http::StatusCode;

use crate::route::{testing::*, Deps, Proxy};
use crate::{config::HttpFilter, health::PANIC_LIMIT};

fn get() -> http::Request<crate::body::Body> {
    http::Request::builder()
        .uri("/r")
        .header("host", "reviews:9080")
        .body(crate::body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_panicking_request_gets_500_and_the_next_is_served() {
    let upstream = Arc::new(FakeUpstream::default());
    upstream.script("c", [Behavior::Panic]);
    let cfg = active(
        &reviews(vec![route("a", prefix("/"), to_cluster("c"))]),
        vec![HttpFilter::Router],
    );
    let proxy = Proxy::new(Arc::new(cfg), Deps::new(upstream.clone()));
    assert_eq!(
        proxy.handle(get()).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(proxy.handle(get()).await.status(), StatusCode::OK);
    let liveness = proxy.liveness();
    assert_eq!(liveness.panics_total(), 1);
    assert!(liveness.check().is_live(), "one panic is not broken");
    upstream.script("c", (0..PANIC_LIMIT).map(|_| Behavior::Panic));
    for _ in 0..PANIC_LIMIT {
        assert_eq!(
            proxy.handle(get()).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert!(!liveness.check().is_live(), "panicking on every request");
}
