//! Per-pod HBONE listeners: for every enrolled pod of this node the agent
//! serves HBONE on `<pod IP>:15008` inside the pod's network namespace, as
//! ztunnel's in-pod mode does. A listener is bound to its pod's identity:
//! it presents that certificate to a client sending no SNI (ztunnel) and
//! accepts our SNI form only when it names that identity; its tunnels may
//! reach that pod only (crate::inbound::hbone with `pod` set).
//!
//! Enrolment is a map other processes update, so the reconciler polls it
//! (and runs on every view change, which may bring a pod's identity). It
//! also keeps the [`PodNetnsTable`] the outbound proxy opens tunnels from.
//! A pod that leaves the enrolment map (or changes identity or address)
//! has its listener stopped: no new connections, open tunnels drain within
//! the server's drain timeout.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use mesh_hbone::{CertStore, HboneServer, Identity, ServerOptions, HBONE_PORT};
use tokio::sync::watch;

use super::hbone::InboundHandler;
use crate::{
    capture::{
        enroll::Enroller,
        netns_sockets::NetnsSockets,
        pod_netns::{NetnsLocator, PodNetns, PodNetnsTable},
    },
    shutdown::Shutdown,
    state::inputs::ProxyInputs,
};

/// How often enrolment is re-read (no event announces it).
const ENROLMENT_POLL: Duration = Duration::from_millis(100);
/// After a listener could not be made (address taken, namespace gone),
/// how long before trying that pod again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Backlog of a pod's listener.
const BACKLOG: i32 = 1024;
/// Open connections one pod's listener holds at once (the node listener
/// holds 16384 for all pods).
pub const MAX_CONNECTIONS_PER_POD: usize = 4096;

/// One pod's running listener.
struct Running {
    ip: IpAddr,
    identity: Identity,
    /// Dropping it stops the listener.
    _stop: watch::Sender<()>,
}

/// What a reconcile pass left, for logs and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub listening: usize,
    pub started: usize,
    pub stopped: usize,
}

pub struct PodListeners {
    pub sockets: NetnsSockets,
    pub locator: NetnsLocator,
    pub enroller: Enroller,
    pub table: Arc<PodNetnsTable>,
    pub store: Arc<CertStore>,
    pub inputs: Arc<ProxyInputs>,
    /// Limits and timeouts of each listener (as the node listener's, with
    /// [`MAX_CONNECTIONS_PER_POD`]).
    pub options: ServerOptions,
    pub shutdown: Arc<Shutdown>,
    running: HashMap<u64, Running>,
    failed: HashMap<u64, Instant>,
}

impl PodListeners {
    pub fn new(
        sockets: NetnsSockets,
        enroller: Enroller,
        table: Arc<PodNetnsTable>,
        store: Arc<CertStore>,
        inputs: Arc<ProxyInputs>,
        options: ServerOptions,
        shutdown: Arc<Shutdown>,
    ) -> Self {
        Self {
            locator: NetnsLocator::new(sockets.clone()),
            sockets,
            enroller,
            table,
            store,
            inputs,
            options,
            shutdown,
            running: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Reconciles until the agent shuts down; then every listener stops.
    pub async fn run(mut self) {
        let mut view = self.inputs.view.clone();
        loop {
            self.reconcile().await;
            tokio::select! {
                () = tokio::time::sleep(ENROLMENT_POLL) => {}
                changed = view.changed() => if changed.is_err() { break },
                _ = self.shutdown.triggered() => break,
            }
        }
        self.running.clear();
    }

    /// One pass: stop what should not run, find namespaces, start what is
    /// missing.
    pub async fn reconcile(&mut self) -> Counts {
        let enrolled: HashMap<u64, IpAddr> = self
            .enroller
            .list()
            .into_iter()
            .filter_map(|p| Some((p.netns_cookie, p.pod_ip?)))
            .collect();
        let view = self.inputs.view.borrow().clone();
        let wanted: HashMap<u64, (IpAddr, Identity)> = enrolled
            .iter()
            .filter_map(|(cookie, ip)| {
                let w = view.workload_by_ip(*ip).filter(|w| w.mesh)?;
                Some((*cookie, (*ip, w.identity.clone())))
            })
            .collect();
        let mut counts = Counts::default();
        self.running.retain(|cookie, r| {
            let keep = wanted
                .get(cookie)
                .is_some_and(|(ip, id)| *ip == r.ip && *id == r.identity);
            if !keep {
                tracing::info!(pod = %r.ip, identity = %r.identity, "pod HBONE listener stopped");
                counts.stopped += 1;
            }
            keep
        });
        self.failed
            .retain(|cookie, _| enrolled.contains_key(cookie));
        self.table
            .retain(|ip, pod| enrolled.get(&pod.cookie) == Some(&ip));
        let missing: HashSet<u64> = enrolled
            .iter()
            .filter(|(cookie, ip)| self.table.get(**ip).is_none_or(|p| p.cookie != **cookie))
            .map(|(cookie, _)| *cookie)
            .filter(|cookie| {
                self.failed
                    .get(cookie)
                    .is_none_or(|t| t.elapsed() >= RETRY_AFTER)
            })
            .collect();
        let found = self.locator.find(&missing).await;
        for cookie in &missing {
            match found.get(cookie) {
                Some(netns) => self.table.insert(
                    enrolled[cookie],
                    PodNetns {
                        cookie: *cookie,
                        netns: Arc::clone(netns),
                    },
                ),
                None => {
                    tracing::warn!(cookie, pod = %enrolled[cookie], "network namespace of an enrolled pod not found; no HBONE listener in it");
                    self.failed.insert(*cookie, Instant::now());
                }
            }
        }
        for (cookie, (ip, identity)) in wanted {
            if self.running.contains_key(&cookie)
                || self
                    .failed
                    .get(&cookie)
                    .is_some_and(|t| t.elapsed() < RETRY_AFTER)
            {
                continue;
            }
            let Some(pod) = self.table.get(ip).filter(|p| p.cookie == cookie) else {
                continue;
            };
            match self.start(&pod, ip, &identity).await {
                Ok(running) => {
                    self.failed.remove(&cookie);
                    self.running.insert(cookie, running);
                    counts.started += 1;
                }
                Err(error) => {
                    tracing::warn!(pod = %ip, %identity, %error, "cannot listen for HBONE in the pod; retrying in {RETRY_AFTER:?}");
                    self.failed.insert(cookie, Instant::now());
                }
            }
        }
        counts.listening = self.running.len();
        counts
    }

    async fn start(
        &self,
        pod: &PodNetns,
        ip: IpAddr,
        identity: &Identity,
    ) -> Result<Running, crate::capture::netns_sockets::SocketsError> {
        let addr = SocketAddr::new(ip, HBONE_PORT);
        let listener = self.sockets.listener(&pod.netns, addr, BACKLOG).await?;
        let handler = Arc::new(InboundHandler::for_pod(Arc::clone(&self.inputs), ip));
        let server = HboneServer::new(Arc::clone(&self.store), handler)
            .with_identity(identity.clone())
            .with_options(self.options.clone());
        let (stop_tx, mut stop_rx) = watch::channel(());
        let shutdown = Arc::clone(&self.shutdown);
        tokio::spawn(async move {
            let stop = async move {
                tokio::select! {
                    _ = stop_rx.changed() => {}
                    _ = shutdown.triggered() => {}
                }
            };
            if let Err(error) = server.serve_with_shutdown(listener, stop).await {
                tracing::error!(%addr, %error, "pod HBONE listener failed");
            }
        });
        tracing::info!(%addr, %identity, cookie = pod.cookie, "pod HBONE listener ready");
        Ok(Running {
            ip,
            identity: identity.clone(),
            _stop: stop_tx,
        })
    }
}
