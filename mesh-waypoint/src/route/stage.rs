//! A request filter as a tower layer: a [`Stage`] either passes the
//! request on (possibly changed, possibly after a delay) or answers it.
use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{util::BoxCloneService, Layer, Service};

use super::exchange::Exchange;
use crate::body::Body;

/// The service type every layer produces and consumes.
pub type HttpService = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// What a stage decided.
pub enum Step {
    Next(Request<Body>),
    Respond(Response<Body>),
}

/// One decoder filter (select, fault, RBAC, …).
pub trait Stage: Send + Sync + 'static {
    fn run(&self, req: Request<Body>, ex: Arc<Exchange>) -> BoxFuture<'static, Step>;
}

/// Wraps a [`Stage`] as a tower [`Layer`].
#[derive(Clone)]
pub struct StageLayer(pub Arc<dyn Stage>);

// Layers wrap the boxed stack: a generic inner `S` would need its future
// to be `Send` for every lifetime of the boxed error type, which rustc
// cannot prove for the UnsyncBoxBody request.
impl Layer<HttpService> for StageLayer {
    type Service = StageService;

    fn layer(&self, inner: HttpService) -> StageService {
        StageService {
            stage: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct StageService {
    stage: Arc<dyn Stage>,
    inner: HttpService,
}

impl Service<Request<Body>> for StageService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let ex = Exchange::of(&mut req);
        let stage = self.stage.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            match stage.run(req, ex).await {
                // Every stack service is always ready (poll_ready is Ready).
                Step::Next(req) => inner.call(req).await,
                Step::Respond(resp) => Ok(resp),
            }
        })
    }
}
