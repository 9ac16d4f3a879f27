//! Connections the kernel carries: same-node pairs the agent authorized
//! (capture/fast_path.rs) connect pod to pod directly, and sock_ops
//! reports each one through the `kernel_conn_events` ring buffer when it
//! is established and when it closes. Here they get what a carried
//! connection gets:
//! - opened in the stats with both reporters (`route` = `kernel`), labels
//!   from the view, and authorized again on the current view: a pair
//!   cached just before a policy change is aborted at once;
//! - registered with the live connections, so a later policy change
//!   aborts it (sock_diag in the client pod's namespace);
//! - finished at close with the kernel's byte counts (bytes the client
//!   sent that the server acknowledged, bytes the client received), which
//!   also writes its access-log line.
//!
//! Bytes of an open fast-path connection are not sampled while it runs:
//! the metrics count them when it closes.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::fd::OwnedFd,
    sync::Arc,
};

use mesh_common::{ConnTuple, KernelConnEvent, SockAddr, KERNEL_CONN_CLOSED, KERNEL_CONN_OPENED};

use crate::{
    capture::{
        kernel_events::{self, KernelEvents},
        netns_sockets::NetnsSockets,
        pod_netns::PodNetnsTable,
        sock_destroy,
    },
    inbound::local,
    metrics::labels::ConnLabels,
    policy::live::LiveGuard,
    route,
    state::{connections::Open, inputs::ProxyInputs, outcome::Carried},
};

/// A fast-path connection being tracked.
struct Tracked {
    open: Open,
    _live: Option<LiveGuard>,
}

pub struct KernelCarried {
    pub events: KernelEvents,
    pub inputs: Arc<ProxyInputs>,
    pub pods: Arc<PodNetnsTable>,
    pub sockets: NetnsSockets,
}

pub(crate) fn plain(addr: &SockAddr) -> SocketAddr {
    let v6 = std::net::Ipv6Addr::from(addr.addr);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, addr.port)
}

impl KernelCarried {
    /// Reads events until the ring buffer fails.
    pub async fn run(self) {
        let KernelCarried {
            mut events,
            inputs,
            pods,
            sockets,
        } = self;
        let mut state = State {
            inputs,
            pods,
            sockets,
            tracked: HashMap::new(),
            diag: HashMap::new(),
        };
        loop {
            match events.next_batch().await {
                Ok(batch) => {
                    for event in batch {
                        state.handle(event).await;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "fast-path event ring failed; fast-path connections go unreported");
                    return;
                }
            }
        }
    }
}

struct State {
    inputs: Arc<ProxyInputs>,
    pods: Arc<PodNetnsTable>,
    sockets: NetnsSockets,
    tracked: HashMap<(SocketAddr, SocketAddr), Tracked>,
    /// sock_diag sockets by pod netns cookie.
    diag: HashMap<u64, Arc<OwnedFd>>,
}

impl State {
    async fn handle(&mut self, event: KernelConnEvent) {
        let ConnTuple { src, dst } = event.tuple;
        let (src, dst) = (plain(&src), plain(&dst));
        match event.kind {
            KERNEL_CONN_OPENED => self.opened(event.netns_cookie, src, dst).await,
            KERNEL_CONN_CLOSED => {
                if let Some(tracked) = self.tracked.remove(&(src, dst)) {
                    let (sent, received) = kernel_events::data_bytes(&event);
                    self.inputs.stats.finish(tracked.open, sent, received, None);
                }
            }
            other => tracing::debug!(kind = other, "unknown fast-path event"),
        }
    }

    /// A sock_diag socket in the namespace of the pod at `src` whose
    /// cookie is `netns_cookie`.
    async fn diag(&mut self, netns_cookie: u64, src: IpAddr) -> Option<Arc<OwnedFd>> {
        if let Some(diag) = self.diag.get(&netns_cookie) {
            return Some(Arc::clone(diag));
        }
        let pod = self.pods.get(src).filter(|p| p.cookie == netns_cookie)?;
        match self.sockets.sock_diag(&pod.netns).await {
            Ok(fd) => {
                // Pods come and go: keep only those still enrolled.
                let pods = &self.pods;
                self.diag.retain(|cookie, _| pods.contains_cookie(*cookie));
                let fd = Arc::new(fd);
                self.diag.insert(netns_cookie, Arc::clone(&fd));
                Some(fd)
            }
            Err(error) => {
                tracing::warn!(%error, %src, "no sock_diag socket in the pod's namespace");
                None
            }
        }
    }

    async fn opened(&mut self, netns_cookie: u64, src: SocketAddr, dst: SocketAddr) {
        let inputs = Arc::clone(&self.inputs);
        let view = inputs.view.borrow().clone();
        let resolved = route::resolve(&view, src.ip(), dst);
        let stats = &inputs.stats;
        let mut open = stats.open(src, dst);
        open.route = Carried::Kernel;
        open.upstream = Some(dst);
        stats.begin(&mut open, ConnLabels::outbound(&view, src.ip(), &resolved));
        let diag = self.diag(netns_cookie, src.ip()).await;
        match local::authorize(&view, src, dst) {
            Ok(allowed) => {
                if let Some(id) = &allowed.destination {
                    open.destination_identity = id.to_string();
                }
                if let Some(id) = &allowed.source {
                    open.source_identity = id.to_string();
                }
                let live = diag.map(|diag| {
                    inputs
                        .live
                        .register_kernel(allowed.source.as_ref(), src, dst, diag)
                });
                if live.is_none() {
                    tracing::warn!(%src, %dst, "a fast-path connection cannot be closed on policy change");
                }
                self.tracked
                    .insert((src, dst), Tracked { open, _live: live });
            }
            Err(error) => {
                // Cached on a view that has just changed: abort it now.
                open.route = Carried::Denied;
                if let Some(diag) = diag {
                    if let Err(error) = sock_destroy::destroy(&diag, src, dst) {
                        tracing::warn!(%error, %src, %dst, "cannot abort a denied fast-path connection");
                    }
                }
                stats.finish(open, 0, 0, Some(error));
            }
        }
    }
}
