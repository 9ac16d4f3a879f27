//! Per-request state shared by the layers: who the downstream is, and what
//! the layers decided (route, cluster, response flags) for telemetry.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use http::Request;

use crate::{
    body::Body,
    config::table::{Route, VirtualHost},
    telemetry::Peer,
};

/// The span telemetry's `trace::continue_trace` returns.
/// The span a traced request carries (telemetry's).
pub type TraceSpan = crate::telemetry::trace::Span;

/// Facts about the connection a request came on; the server puts one in
/// the request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Downstream {
    /// Principal (HBONE peer) and source IP: on a tunnel the source pod,
    /// only when verified against the peer's identity (`server::source`).
    pub peer: Peer,
    /// Envoy's direct remote address (`ipBlocks`): the verified source pod
    /// on a tunnel, the TCP peer on the plain listener; None = unknown.
    pub direct_ip: Option<IpAddr>,
    /// The HBONE tunnel's `:authority` (`<vip>:<port>`): picks the virtual
    /// host. None on the plain listener (the `Host` header does).
    pub tunnel_authority: Option<SocketAddr>,
    /// Where the request was addressed: the tunnel authority, or the
    /// plain listener's local address (RBAC destination ip/port).
    pub destination: Option<SocketAddr>,
    /// The connection is TLS this proxy terminated (a gateway's HTTPS
    /// listener); `require_tls` virtual hosts redirect requests without it.
    pub tls: bool,
}

impl Downstream {
    /// A plain TCP connection from `peer` to `local` (the waypoint's plain
    /// listener, a gateway's listeners): no identity, the TCP peer is the
    /// source. A gateway marks TLS it terminated with `tls`.
    pub fn tcp(peer: IpAddr, local: Option<SocketAddr>) -> Self {
        Downstream {
            peer: Peer {
                principal: None,
                ip: Some(peer),
            },
            direct_ip: Some(peer),
            tunnel_authority: None,
            destination: local,
            tls: false,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    flags: Vec<&'static str>,
    vhost: Option<Arc<VirtualHost>>,
    route: Option<Arc<Route>>,
    cluster: Option<Arc<str>>,
    workload: Option<Arc<str>>,
    span: Option<TraceSpan>,
}

/// One request's shared record, in the request extensions as `Arc<Exchange>`.
#[derive(Debug, Default)]
pub struct Exchange {
    pub downstream: Downstream,
    state: Mutex<State>,
}

impl Exchange {
    pub fn new(downstream: Downstream) -> Arc<Self> {
        Arc::new(Exchange {
            downstream,
            state: Mutex::default(),
        })
    }

    /// The exchange of `req`; a fresh one if a layer runs alone (tests).
    pub fn of(req: &mut Request<Body>) -> Arc<Exchange> {
        if let Some(ex) = req.extensions().get::<Arc<Exchange>>() {
            return ex.clone();
        }
        let downstream = req
            .extensions()
            .get::<Downstream>()
            .cloned()
            .unwrap_or_default();
        let ex = Exchange::new(downstream);
        req.extensions_mut().insert(ex.clone());
        ex
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an Envoy response flag (once).
    pub fn flag(&self, f: &'static str) {
        let mut s = self.state();
        if !s.flags.contains(&f) {
            s.flags.push(f);
        }
    }

    pub fn flags(&self) -> Vec<&'static str> {
        self.state().flags.clone()
    }

    /// Flags joined by `,`, `-` when none.
    pub fn flags_text(&self) -> String {
        let f = self.flags();
        if f.is_empty() {
            "-".into()
        } else {
            f.join(",")
        }
    }

    pub fn set_route(&self, vhost: Arc<VirtualHost>, route: Arc<Route>) {
        let mut s = self.state();
        s.vhost = Some(vhost);
        s.route = Some(route);
    }

    pub fn set_vhost(&self, vhost: Arc<VirtualHost>) {
        self.state().vhost = Some(vhost);
    }

    pub fn route(&self) -> Option<Arc<Route>> {
        self.state().route.clone()
    }

    pub fn vhost(&self) -> Option<Arc<VirtualHost>> {
        self.state().vhost.clone()
    }

    pub fn set_upstream(&self, cluster: Arc<str>, workload: Option<Arc<str>>) {
        let mut s = self.state();
        s.cluster = Some(cluster);
        s.workload = workload;
    }

    pub fn cluster(&self) -> Option<Arc<str>> {
        self.state().cluster.clone()
    }

    pub fn workload(&self) -> Option<Arc<str>> {
        self.state().workload.clone()
    }

    pub fn set_span(&self, span: Option<TraceSpan>) {
        self.state().span = span;
    }

    pub fn span(&self) -> Option<TraceSpan> {
        self.state().span.clone()
    }
}
