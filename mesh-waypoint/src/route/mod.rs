//! The request path (hop ⑤ of the data path): a tower stack built from the
//! active config and rebuilt when it changes.
//!
//! ```text
//! observe → select (path normalised, 400 DPE; vhost, route; 404 NR) → [listener's http_filters in
//! order: fault (DI/FI), rbac (403 RBAC) …] → router (redirect / direct /
//! rewrite, header edits, cluster pick, hash, mirror, timeout UT, retries
//! URX) → Upstream::send
//! ```
pub mod buffer;
pub mod dice;
pub mod exchange;
pub mod fault;
pub mod hash;
pub mod idle;
pub mod observe;
pub mod path_normalize;
pub mod pick;
pub mod rbac;
pub mod reply;
pub mod retry;
pub mod rewrite;
pub mod router;
pub mod select;
pub mod stage;

use std::sync::{Arc, Mutex};

use tower::{Layer, Service};

pub use exchange::{Downstream, Exchange, TraceSpan};
pub use observe::{NoObserver, Observer};
pub use router::TraceFn;
pub use stage::HttpService;

use crate::{
    config::{ActiveConfig, HttpFilter},
    health::Liveness,
    upstream::Upstream,
};

/// Everything the stack needs besides the config.
#[derive(Clone)]
pub struct Deps {
    pub upstream: Arc<dyn Upstream>,
    pub observer: Arc<dyn Observer>,
    pub dice: Arc<dice::Dice>,
    pub trace: Option<TraceFn>,
    /// Largest request body held for retries / mirrors (Envoy's default
    /// buffer limit is 1 MiB).
    pub max_buffer: usize,
    /// Where [`Proxy::handle`] reports the panics it catches.
    pub liveness: Arc<Liveness>,
    /// Envoy's `stream_idle_timeout` ([`idle::STREAM_IDLE_TIMEOUT`]).
    pub stream_idle: std::time::Duration,
}

impl Deps {
    pub fn new(upstream: Arc<dyn Upstream>) -> Self {
        Deps {
            upstream,
            observer: Arc::new(NoObserver),
            dice: Arc::new(dice::Dice::from_entropy()),
            trace: None,
            max_buffer: 1 << 20,
            liveness: Arc::default(),
            stream_idle: idle::STREAM_IDLE_TIMEOUT,
        }
    }
}

/// The stack for `cfg`.
pub fn build(cfg: &ActiveConfig, deps: &Deps) -> HttpService {
    let mut svc = HttpService::new(router::Router {
        upstream: deps.upstream.clone(),
        dice: deps.dice.clone(),
        trace: deps.trace.clone(),
        max_buffer: deps.max_buffer,
        stream_idle: deps.stream_idle,
    });
    for f in cfg.filters.iter().rev() {
        let stage: Arc<dyn stage::Stage> = match f {
            HttpFilter::Fault(c) => Arc::new(fault::Fault {
                config: c.clone(),
                dice: deps.dice.clone(),
            }),
            HttpFilter::Rbac { name, rules } => Arc::new(rbac::Rbac {
                name: name.clone(),
                rules: rules.clone(),
            }),
            HttpFilter::Router => continue,
        };
        svc = HttpService::new(stage::StageLayer(stage).layer(svc));
    }
    let select: Arc<dyn stage::Stage> = Arc::new(select::Select {
        table: cfg.table.clone(),
    });
    svc = HttpService::new(stage::StageLayer(select).layer(svc));
    HttpService::new(observe::ObserveLayer(deps.observer.clone()).layer(svc))
}

/// The current stack, swapped when the config changes; what the servers
/// call for every request.
pub struct Proxy {
    deps: Deps,
    // A Mutex, not an RwLock: the boxed service is Send but not Sync.
    current: Mutex<(Arc<ActiveConfig>, HttpService)>,
}

impl Proxy {
    pub fn new(cfg: Arc<ActiveConfig>, deps: Deps) -> Arc<Self> {
        let svc = build(&cfg, &deps);
        Arc::new(Proxy {
            deps,
            current: Mutex::new((cfg, svc)),
        })
    }

    pub fn apply(&self, cfg: Arc<ActiveConfig>) {
        let svc = build(&cfg, &self.deps);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = (cfg, svc);
    }

    pub fn config(&self) -> Arc<ActiveConfig> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    pub fn service(&self) -> HttpService {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// What the proxy's liveness probe asks.
    pub fn liveness(&self) -> Arc<Liveness> {
        self.deps.liveness.clone()
    }

    /// Serves one request with the current stack. A panic while building
    /// the response is caught: the client gets a 500 and
    /// [`Liveness`] counts it (a panic while streaming the body afterwards
    /// ends that one stream in hyper's task). (A boxed future of a concrete
    /// type: callers need not prove the stack's future `Send` for every
    /// lifetime of the boxed body error, which rustc cannot.)
    pub fn handle(
        &self,
        req: http::Request<crate::body::Body>,
    ) -> futures::future::BoxFuture<'static, http::Response<crate::body::Body>> {
        use futures::FutureExt;
        use std::panic::AssertUnwindSafe;
        let liveness = self.deps.liveness.clone();
        let mut svc = self.service();
        // The stack is always ready (every poll_ready is Ready).
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| svc.call(req))) {
            Ok(fut) => fut,
            Err(panic) => return Box::pin(async move { panicked(&liveness, &*panic) }),
        };
        Box::pin(async move {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(resp)) => resp,
                Ok(Err(never)) => match never {},
                Err(panic) => panicked(&liveness, &*panic),
            }
        })
    }
}

/// Counts a caught panic and answers 500.
fn panicked(
    liveness: &Liveness,
    panic: &(dyn std::any::Any + Send),
) -> http::Response<crate::body::Body> {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    liveness.record_panic();
    tracing::error!(
        panic = message,
        total = liveness.panics_total(),
        health = ?liveness.check(),
        "request handling panicked; answered 500"
    );
    let mut resp = http::Response::new(crate::body::full("internal error"));
    *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
