//! The gateway's listener manager: binds the `address` of every LDS
//! Listener, keeps serving it while the resource stays (its chains, routes
//! and certificates are rebuilt on every update), and stops a removed
//! listener: it stops accepting at once and its open connections finish
//! their in-flight requests, as on drain. A listener whose chains cannot be
//! built keeps its previous version serving (a new one is not bound).
//! A connection to a TLS listener is served by the chain its ClientHello's
//! SNI picks ([`sni`]): terminated (HTTP or `tcp_proxy`) or passed through
//! untouched; the hello bytes are replayed to it ([`Rewind`]).
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use envoy_types::pb::envoy::config::{listener::v3::Listener, route::v3::RouteConfiguration};
use mesh_admin::drain::DrainWatch;
use serde_json::{json, Value};
use tokio::{net::TcpStream, sync::watch, task::JoinHandle};
use tokio_rustls::LazyConfigAcceptor;

use super::{
    chains::{Chain, Chains, Handler},
    peer,
    relay::{self, TcpContext},
    rewind::Rewind,
    sni,
    spec::{self, GatewayListener, TcpChainConfig},
    tcp::TcpUpstreams,
    tls,
};
use crate::{
    config::{dump, ActiveConfig, ChainConfig},
    route::{Deps, Downstream, Proxy},
    server,
    sync::MutexExt,
    telemetry::tcp::{TcpObserver, TcpRecord},
    upstream::connector::Connector,
};

/// Open connections per listener in total and per client address.
const LIMITS: mesh_admin::listen::Limits = mesh_admin::listen::Limits {
    max_connections: 16_384,
    max_per_source: Some(1024),
};
/// A client must finish its TLS handshake within this time.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One bound listener.
struct Running {
    /// The resource's address, as configured.
    address: String,
    /// The resource as translated (for `/config_dump`).
    spec: GatewayListener,
    local: SocketAddr,
    chains: Arc<Mutex<Arc<Chains>>>,
    /// The route stack of each chain, by [`chain_key`], kept across
    /// updates so open connections see new routes.
    proxies: HashMap<String, Arc<Proxy>>,
    stop: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

pub struct ListenerManager {
    deps: Deps,
    tcp: TcpContext,
    credential_dir: PathBuf,
    shutdown: DrainWatch,
    running: Mutex<HashMap<String, Running>>,
    stopped: Mutex<Vec<JoinHandle<()>>>,
}

/// Identifies a chain across updates: its SNI names and whether it is TLS.
fn chain_key(c: &ChainConfig) -> String {
    format!("{}|{}", c.tls.is_some(), c.server_names.join(","))
}

impl ListenerManager {
    /// Serves with `deps`' upstreams and telemetry; resolves
    /// `kubernetes://` certificate names in `credential_dir`; every
    /// listener stops and drains once `shutdown` turns true. `tcp_proxy`
    /// chains reach plain endpoints only and report no telemetry (see
    /// [`Self::with_connector`]).
    pub fn new(deps: Deps, credential_dir: PathBuf, shutdown: DrainWatch) -> Arc<Self> {
        Self::with_connector(deps, credential_dir, shutdown, Connector::default(), None)
    }

    /// As [`Self::new`], `tcp_proxy` chains dialling with `connector`
    /// (HBONE to mesh workloads with the gateway's identity) and reporting
    /// their connections to `telemetry` (Istio's TCP metrics, access log).
    pub fn with_connector(
        deps: Deps,
        credential_dir: PathBuf,
        shutdown: DrainWatch,
        connector: Connector,
        telemetry: Option<Arc<TcpObserver>>,
    ) -> Arc<Self> {
        Arc::new(ListenerManager {
            deps,
            tcp: TcpContext {
                upstreams: TcpUpstreams::new(connector),
                telemetry,
            },
            credential_dir,
            shutdown,
            running: Mutex::new(HashMap::new()),
            stopped: Mutex::new(Vec::new()),
        })
    }

    /// The address a listener is bound to.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.running.lock_unpoisoned().get(name).map(|r| r.local)
    }

    /// Names of the bound listeners.
    pub fn names(&self) -> Vec<String> {
        self.running.lock_unpoisoned().keys().cloned().collect()
    }

    /// The TLS contexts of the bound listeners' chains as `(listener, SNI
    /// names, context)`, and the directory `kubernetes://` names resolve
    /// in: what the admin's certificate listing reads.
    pub fn tls_contexts(
        &self,
    ) -> (
        Vec<(String, Vec<String>, crate::config::tls::TlsContext)>,
        PathBuf,
    ) {
        let running = self.running.lock_unpoisoned();
        let mut out = vec![];
        for (name, r) in running.iter() {
            let http = r.spec.http.iter().flat_map(|h| &h.chains);
            let chains = http
                .map(|c| (&c.server_names, &c.tls))
                .chain(r.spec.tcp.iter().map(|c| (&c.server_names, &c.tls)));
            for (server_names, tls) in chains {
                if let Some(tls) = tls {
                    out.push((name.clone(), server_names.clone(), tls.clone()));
                }
            }
        }
        (out, self.credential_dir.clone())
    }

    /// The endpoints `tcp_proxy` chains dial (applied from every snapshot).
    pub fn tcp_upstreams(&self) -> &Arc<TcpUpstreams> {
        &self.tcp.upstreams
    }

    /// The bound listeners for `/config_dump`, by name: address and each
    /// filter chain (SNI names, TLS or not, route configuration and HTTP
    /// filters, or the `tcp_proxy` clusters); the routes of every HTTP
    /// chain. Returns `(listeners, routes)`.
    pub fn dump(&self) -> (Value, Value) {
        let running = self.running.lock_unpoisoned();
        let mut names: Vec<&String> = running.keys().collect();
        names.sort();
        let mut listeners = vec![];
        let mut routes = vec![];
        let mut seen_routes = std::collections::BTreeSet::new();
        for name in names {
            let r = &running[name];
            let mut chains = vec![];
            if let Some(http) = &r.spec.http {
                for c in &http.chains {
                    let route_config = match &c.routes {
                        crate::config::listener::RouteSource::Rds(n) => n.clone(),
                        crate::config::listener::RouteSource::Inline(t) => t.name.clone(),
                    };
                    let filters: Vec<&str> = c.filters.iter().map(|f| f.name()).collect();
                    chains.push(json!({
                        "server_names": c.server_names,
                        "tls": c.tls.is_some(),
                        "route_config": route_config,
                        "http_filters": filters,
                    }));
                    if let Some(p) = r.proxies.get(&chain_key(c)) {
                        let cfg = p.config();
                        if seen_routes.insert(cfg.table.name.clone()) {
                            if let Some(rc) = dump::routes(&cfg).as_array() {
                                routes.extend(rc.iter().cloned());
                            }
                        }
                    }
                }
            }
            for c in &r.spec.tcp {
                chains.push(json!({
                    "server_names": c.server_names,
                    "tls": c.tls.is_some(),
                    "tcp_proxy": c.target.clusters.iter().map(|(c, w)| json!({"cluster": c, "weight": w})).collect::<Vec<_>>(),
                }));
            }
            let first = chains.first().cloned().unwrap_or_default();
            listeners.push(json!({
                "name": name,
                "address": r.local.to_string(),
                "route_config": first.get("route_config").cloned().unwrap_or(Value::Null),
                "http_filters": first.get("http_filters").cloned().unwrap_or(json!([])),
                "filter_chains": chains,
            }));
        }
        (json!(listeners), json!(routes))
    }

    /// Makes the bound listeners those of `listeners`, with routes from
    /// `routes`. Returns what could not be applied (also logged).
    pub fn apply<'a>(
        &self,
        listeners: &[&'a Listener],
        routes: impl Fn(&str) -> Option<&'a RouteConfiguration>,
    ) -> Vec<anyhow::Error> {
        let mut errors = Vec::new();
        let mut running = self.running.lock_unpoisoned();
        let wanted: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        let removed: Vec<String> = running
            .keys()
            .filter(|n| !wanted.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(r) = running.remove(&name) {
                tracing::info!(listener = %name, address = %r.local, "listener removed; draining");
                self.retire(r);
            }
        }
        for l in listeners {
            if let Err(error) = self.apply_one(&mut running, l, &routes) {
                tracing::warn!(listener = %l.name, error = format!("{error:#}"), "listener not applied");
                errors.push(error.context(format!("Listener {}", l.name)));
            }
        }
        errors
    }

    fn apply_one<'a>(
        &self,
        running: &mut HashMap<String, Running>,
        l: &Listener,
        routes: &impl Fn(&str) -> Option<&'a RouteConfiguration>,
    ) -> anyhow::Result<()> {
        let cfg = spec::translate(l).map_err(|e| anyhow::anyhow!("{e}"))?;
        if running
            .get(&l.name)
            .is_some_and(|r| r.address != cfg.address)
        {
            let old = running.remove(&l.name).expect("present");
            self.retire(old);
        }
        match running.get_mut(&l.name) {
            Some(r) => {
                let chains = self.build_chains(&cfg, routes, &mut r.proxies)?;
                *r.chains.lock_unpoisoned() = Arc::new(chains);
                r.spec = cfg;
            }
            None => {
                let mut proxies = HashMap::new();
                let chains = self.build_chains(&cfg, routes, &mut proxies)?;
                let r = self.bind(&cfg, chains, proxies)?;
                tracing::info!(listener = %l.name, address = %r.local, "listener bound");
                running.insert(l.name.clone(), r);
            }
        }
        Ok(())
    }

    fn build_chains<'a>(
        &self,
        spec: &GatewayListener,
        routes: &impl Fn(&str) -> Option<&'a RouteConfiguration>,
        proxies: &mut HashMap<String, Arc<Proxy>>,
    ) -> anyhow::Result<Chains> {
        let mut chains = Vec::new();
        let mut kept = HashMap::new();
        for (i, c) in spec.tcp.iter().enumerate() {
            chains.push(
                self.tcp_chain(c)
                    .with_context(|| format!("tcp_proxy chain {i}"))?,
            );
        }
        let Some(l) = &spec.http else {
            *proxies = kept;
            return Ok(Chains { chains });
        };
        for (i, c) in l.chains.iter().enumerate() {
            let active = ActiveConfig::for_chain(l, c, routes)
                .map_err(|e| anyhow::anyhow!("filter_chains[{i}]: {e}"))?;
            let tls = c
                .tls
                .as_ref()
                .map(|t| tls::server_config(t, &self.credential_dir))
                .transpose()
                .with_context(|| format!("filter_chains[{i}] TLS"))?;
            let key = chain_key(c);
            let proxy = match proxies.get(&key) {
                Some(p) => {
                    p.apply(Arc::new(active));
                    p.clone()
                }
                None => Proxy::new(Arc::new(active), self.deps.clone()),
            };
            kept.insert(key, proxy.clone());
            chains.push(Chain {
                server_names: c
                    .server_names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect(),
                tls,
                handler: Handler::Http(proxy),
            });
        }
        *proxies = kept;
        Ok(Chains { chains })
    }

    fn tcp_chain(&self, c: &TcpChainConfig) -> anyhow::Result<Chain> {
        Ok(Chain {
            server_names: c
                .server_names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            tls: c
                .tls
                .as_ref()
                .map(|t| tls::server_config(t, &self.credential_dir))
                .transpose()
                .context("TLS")?,
            handler: Handler::Tcp(Arc::new(c.target.clone())),
        })
    }

    fn bind(
        &self,
        cfg: &GatewayListener,
        chains: Chains,
        proxies: HashMap<String, Arc<Proxy>>,
    ) -> anyhow::Result<Running> {
        let addr: SocketAddr = cfg
            .address
            .parse()
            .with_context(|| format!("address {:?} is not ip:port", cfg.address))?;
        let std_listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let local = listener.local_addr()?;
        let chains = Arc::new(Mutex::new(Arc::new(chains)));
        let stop = Arc::new(watch::channel(false).0);
        let task = tokio::spawn(serve(
            listener,
            chains.clone(),
            self.tcp.clone(),
            stop.clone(),
            self.shutdown.clone(),
        ));
        Ok(Running {
            address: cfg.address.clone(),
            spec: cfg.clone(),
            local,
            chains,
            proxies,
            stop,
            task,
        })
    }

    /// Stops accepting on `r`; its connections drain.
    fn retire(&self, r: Running) {
        r.stop.send_replace(true);
        let mut stopped = self.stopped.lock_unpoisoned();
        stopped.retain(|t| !t.is_finished());
        stopped.push(r.task);
    }

    /// Waits until every listener (after the drain started) and every
    /// removed one finished its connections.
    pub async fn finished(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut running = self.running.lock_unpoisoned();
            let mut tasks: Vec<_> = running.drain().map(|(_, r)| r.task).collect();
            tasks.append(&mut self.stopped.lock_unpoisoned());
            tasks
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Accepts until the listener is removed or the drain starts, then waits
/// for its open connections.
async fn serve(
    listener: tokio::net::TcpListener,
    chains: Arc<Mutex<Arc<Chains>>>,
    tcp: TcpContext,
    stop: Arc<watch::Sender<bool>>,
    mut drain: DrainWatch,
) {
    let local = listener.local_addr().ok();
    let tcp_ctx = tcp;
    let mut removed = stop.subscribe();
    let mut conns: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut listener = mesh_admin::listen::Listener::new(listener, LIMITS, "gateway");
    loop {
        let (tcp, peer, permit) = tokio::select! {
            a = listener.accept() => (a.stream, a.peer, a.permit),
            () = server::stopped(&mut drain) => {
                stop.send_replace(true);
                break;
            }
            () = server::stopped(&mut removed) => break,
        };
        let current = chains.lock_unpoisoned().clone();
        let downstream = Downstream::tcp(peer.ip(), local);
        let conn = connection(
            tcp,
            current,
            tcp_ctx.clone(),
            (peer, downstream),
            stop.subscribe(),
        );
        conns.spawn(async move {
            conn.await;
            drop(permit);
        });
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    tracing::info!(
        address = ?local,
        open = conns.len(),
        "gateway listener stopped accepting; draining"
    );
    while conns.join_next().await.is_some() {}
}

/// Serves one connection: plain through the plain chain, or by the chain
/// the ClientHello's SNI selects (none, or no whole ClientHello: the
/// connection is closed, as Envoy resets it). A verified client
/// certificate's SPIFFE identity is the downstream principal ([`peer`]).
async fn connection(
    tcp: TcpStream,
    chains: Arc<Chains>,
    tcp_ctx: TcpContext,
    (peer_addr, mut downstream): (SocketAddr, Downstream),
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let record = TcpRecord::start(Some(peer_addr));
    if !chains.is_tls() {
        match chains.plain().map(|c| &c.handler) {
            Some(Handler::Http(proxy)) => {
                server::conn::serve(tcp, proxy.clone(), downstream, stop).await
            }
            Some(Handler::Tcp(target)) => relay::proxy(tcp, target, &tcp_ctx, record).await,
            None => {}
        }
        return;
    }
    let mut tcp = tcp;
    let (hello, sni) = match sni::read_client_hello(&mut tcp, TLS_HANDSHAKE_TIMEOUT).await {
        Ok(read) => read,
        Err(error) => {
            tracing::debug!(peer = ?downstream.direct_ip, %error, "TLS connection refused");
            return;
        }
    };
    let Some(chain) = chains.for_sni(sni.as_deref()) else {
        tracing::debug!(peer = ?downstream.direct_ip, ?sni, "no filter chain for the SNI: connection closed");
        return;
    };
    let record = TcpRecord {
        sni: sni.clone(),
        ..record
    };
    let io = Rewind::new(hello, tcp);
    let Some(config) = chain.tls.clone() else {
        match &chain.handler {
            // TLS passed through: the hello and everything after, untouched.
            Handler::Tcp(target) => relay::proxy(io, target, &tcp_ctx, record).await,
            Handler::Http(_) => {
                tracing::debug!(peer = ?downstream.direct_ip, ?sni, "the SNI selects a plain-text HTTP chain: connection closed")
            }
        }
        return;
    };
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
            .await
            .context("reading the ClientHello")?;
        start.into_stream(config).await.context("TLS handshake")
    };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => {
            downstream.tls = true;
            // Only a chain that verifies client certificates has peer
            // certificates: they are the verified chain.
            downstream.peer.principal =
                peer::client_principal(stream.get_ref().1.peer_certificates());
            let record = TcpRecord {
                downstream_principal: downstream.peer.principal.clone(),
                ..record
            };
            match &chain.handler {
                Handler::Http(proxy) => {
                    server::conn::serve(stream, proxy.clone(), downstream, stop).await
                }
                Handler::Tcp(target) => relay::proxy(stream, target, &tcp_ctx, record).await,
            }
        }
        Ok(Err(error)) => {
            tracing::debug!(peer = ?downstream.direct_ip, error = format!("{error:#}"), "TLS connection refused")
        }
        Err(_) => tracing::debug!(peer = ?downstream.direct_ip, "TLS handshake timed out"),
    }
}
