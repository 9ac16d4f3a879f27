//! Fault injection (`envoy.filters.http.fault`): the route's (else the
//! virtual host's, else the filter's) `HTTPFault` — a fixed delay on a
//! percentage of requests (flag `DI`), then an abort (flag `FI`).
use std::sync::Arc;

use futures::future::BoxFuture;
use http::{Request, StatusCode};

use super::{
    dice::Dice,
    exchange::Exchange,
    reply,
    select::{request_host, view},
    stage::{Stage, Step},
};
use crate::{
    body::Body,
    config::fault::{Abort, FaultConfig},
};

pub struct Fault {
    /// The filter's own config (from the listener).
    pub config: Arc<FaultConfig>,
    pub dice: Arc<Dice>,
}

impl Fault {
    fn effective(&self, ex: &Exchange) -> Arc<FaultConfig> {
        ex.route()
            .and_then(|r| r.overrides.fault.clone())
            .or_else(|| ex.vhost().and_then(|v| v.overrides.fault.clone()))
            .unwrap_or_else(|| self.config.clone())
    }
}

impl Stage for Fault {
    fn run(&self, req: Request<Body>, ex: Arc<Exchange>) -> BoxFuture<'static, Step> {
        let cfg = self.effective(&ex);
        if cfg.is_empty() {
            return Box::pin(async move { Step::Next(req) });
        }
        let host = request_host(&req);
        if !cfg.headers.iter().all(|h| h.matches(&view(&req, &host))) {
            return Box::pin(async move { Step::Next(req) });
        }
        let delay = cfg
            .delay
            .filter(|(_, p)| self.dice.chance(*p))
            .map(|(d, _)| d);
        let abort = cfg
            .abort
            .filter(|(_, p)| self.dice.chance(*p))
            .map(|(a, _)| a);
        Box::pin(async move {
            if let Some(d) = delay {
                ex.flag("DI");
                tokio::time::sleep(d).await;
            }
            match abort {
                None => Step::Next(req),
                Some(Abort::Http(status)) => {
                    ex.flag("FI");
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    Step::Respond(reply::local_for(&req, status, "fault filter abort"))
                }
                Some(Abort::Grpc(code)) => {
                    ex.flag("FI");
                    Step::Respond(reply::grpc_reply(code, "fault filter abort"))
                }
            }
        })
    }
}
