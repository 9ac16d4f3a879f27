//! L7 authorization (`envoy.filters.http.rbac*`): the route's (else the
//! virtual host's, else the filter's) rules decide; a denied request gets
//! 403 `RBAC: access denied` and flag `RBAC`.
use std::sync::Arc;

use futures::future::BoxFuture;
use http::{Request, StatusCode};

use super::{
    exchange::Exchange,
    reply,
    select::{request_host, view},
    stage::{Stage, Step},
};
use crate::{
    body::Body,
    config::rbac::{RbacInput, RbacRules},
};

pub struct Rbac {
    /// The filter's name: per-route overrides are keyed by it.
    pub name: String,
    pub rules: Option<Arc<RbacRules>>,
}

impl Rbac {
    fn effective(&self, ex: &Exchange) -> Option<Arc<RbacRules>> {
        if let Some(o) = ex
            .route()
            .and_then(|r| r.overrides.rbac.get(&self.name).cloned())
        {
            return o;
        }
        if let Some(o) = ex
            .vhost()
            .and_then(|v| v.overrides.rbac.get(&self.name).cloned())
        {
            return o;
        }
        self.rules.clone()
    }
}

impl Stage for Rbac {
    fn run(&self, req: Request<Body>, ex: Arc<Exchange>) -> BoxFuture<'static, Step> {
        let step = match self.effective(&ex) {
            None => Step::Next(req),
            Some(rules) => {
                let host = request_host(&req);
                let d = &ex.downstream;
                let input = RbacInput {
                    request: view(&req, &host),
                    principal: d.peer.principal.as_deref(),
                    source_ip: d.peer.ip,
                    direct_ip: d.direct_ip,
                    destination_ip: d.destination.map(|a| a.ip()),
                    destination_port: d.destination.map(|a| a.port()),
                };
                if rules.allows(&input) {
                    Step::Next(req)
                } else {
                    tracing::debug!(
                        filter = %self.name,
                        principal = ?d.peer.principal,
                        path = %req.uri().path(),
                        "RBAC denied"
                    );
                    ex.flag("RBAC");
                    Step::Respond(reply::local_for(
                        &req,
                        StatusCode::FORBIDDEN,
                        "RBAC: access denied",
                    ))
                }
            }
        };
        Box::pin(async move { step })
    }
}
