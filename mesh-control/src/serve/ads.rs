//! Delta ADS server (`envoy.service.discovery.v3.AggregatedDiscoveryService/
//! DeltaAggregatedResources`).
//!
//! Per stream we track, per type URL: the subscription (wildcard when the
//! first request names nothing, or names `*`), what the client holds
//! (name → version: seeded from `initial_resource_versions`, updated as we
//! send), and the responses in flight (nonce → what they changed). Every
//! change of the served [`Resources`] sends each stream only the resources
//! whose version differs from what it holds, and the names it holds that
//! are gone. A NACK rolls our record of what the client holds back to
//! before that response; the reason is logged (cut to
//! [`MAX_NACK_DETAIL`]) and kept in [`ConnectedProxies`]. A NACK names no
//! resource, so the resources of a NACKed response are sent again one per
//! response with the next change, and a resource whose own response is
//! NACKed is not sent again until its version changes: one bad resource
//! never holds back the others of its type. A push is split into responses
//! of at most [`MAX_RESPONSE_BYTES`]; a single resource larger than that is
//! not sent, and said so. A stream may subscribe to at most
//! [`MAX_SUBSCRIBED_NAMES`] names per type and [`MAX_TYPES`] types.
//!
//! Envoy Listeners and RouteConfigurations are per waypoint or ingress
//! gateway pod: a stream identified (by its `Node`) as waypoint
//! `<ns>/<name>` sees only the ones named `waypoint/<ns>/<name>`, a
//! `router~` stream those of the Gateways selecting its pod, any other
//! stream none; every other type is served to all streams alike.
//!
//! With an [`AuthPolicy`] a stream without a valid bearer token, or whose
//! `clusterid` header names another cluster, is refused (UNAUTHENTICATED)
//! before anything is sent.
//!
//! A stream from Istio's ztunnel (super::ztunnel_compat) is not sent what
//! ztunnel would NACK: Authorization policies with our AUDIT action.
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use mesh_xds::proto::envoy_discovery::{
    aggregated_discovery_service_server::AggregatedDiscoveryService, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::stream_identity::{scoped_type, StreamIdentity};
use super::{
    proxies::ConnectedProxies,
    resources::{Resources, TypeResources},
};
use crate::authn::AuthPolicy;

/// Responses awaiting ACK kept per type; older ones are forgotten (treated
/// as accepted) so a client that never ACKs cannot grow our memory.
const MAX_PENDING: usize = 32;
/// Responses buffered per stream before the stream task waits for the client.
const RESPONSE_BUFFER: usize = 4;
/// The wildcard resource name.
const WILDCARD: &str = "*";
/// Explicitly subscribed names per type and stream; beyond, the stream
/// ends with RESOURCE_EXHAUSTED.
pub const MAX_SUBSCRIBED_NAMES: usize = 10_000;
/// Type URLs one stream may subscribe to.
pub const MAX_TYPES: usize = 16;
/// Characters of a NACK's error detail kept for logs and the registry.
pub const MAX_NACK_DETAIL: usize = 1024;
/// Encoded resources per response: below tonic's and Envoy's usual 4 MiB
/// receive limit, with room for the envelope.
pub const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// The gRPC service; one task per stream.
pub struct AdsService {
    resources: watch::Receiver<Arc<Resources>>,
    proxies: Arc<ConnectedProxies>,
    next_stream: AtomicU64,
    auth: Option<AuthPolicy>,
    /// The only cluster a `clusterid` header may name (with `auth`).
    cluster_id: String,
}

impl AdsService {
    pub fn new(resources: watch::Receiver<Arc<Resources>>, proxies: Arc<ConnectedProxies>) -> Self {
        AdsService {
            resources,
            proxies,
            next_stream: AtomicU64::new(1),
            auth: None,
            cluster_id: mesh_xds::client::node_identity::DEFAULT_CLUSTER_ID.into(),
        }
    }

    /// The cluster callers' `clusterid` header must name (when present).
    pub fn with_cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.cluster_id = cluster_id.into();
        self
    }

    /// Requires every stream to carry a valid bearer token.
    pub fn with_auth(mut self, policy: Option<AuthPolicy>) -> Self {
        self.auth = policy;
        self
    }
}

type ResponseTx = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    /// State-of-the-world ADS is not served: Istio's clients (ztunnel, our
    /// agents) and Envoy with `api_type: DELTA_GRPC` speak Delta.
    async fn stream_aggregated_resources(
        &self,
        _req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "this control plane serves Delta ADS only (DeltaAggregatedResources)",
        ))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let peer = mesh_xds::transport::remote_addr(&req);
        let mut account = None;
        if let Some(policy) = &self.auth {
            let metadata = req.metadata();
            let caller = async {
                crate::authn::check_cluster(metadata, &self.cluster_id)?;
                policy.authenticate(metadata).await
            }
            .await
            .map_err(|e| {
                warn!(?peer, "xDS stream not authenticated: {e}");
                e.to_status("xDS stream")
            })?;
            info!(?peer, caller = %caller, "xDS stream authenticated");
            account = Some((caller.namespace, caller.service_account));
        }
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let stream = AdsStream {
            id,
            peer,
            node_id: None,
            identity: StreamIdentity {
                account,
                ..StreamIdentity::default()
            },
            nonce_prefix: format!("{:08x}", rand::random::<u32>()),
            nonces: 0,
            types: BTreeMap::new(),
            proxies: self.proxies.clone(),
        };
        self.proxies.connected(id, peer);
        tokio::spawn(stream.run(req.into_inner(), self.resources.clone(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A response in flight: per name, what the client held before it.
struct Pending {
    nonce: String,
    /// Resources it carried, name → version.
    sent: Vec<(String, String)>,
    before: Vec<(String, Option<String>)>,
    after: BTreeMap<String, Option<String>>,
}

#[derive(Default)]
struct TypeState {
    wildcard: bool,
    /// Explicitly subscribed names.
    names: BTreeSet<String>,
    /// What the client holds, name → version.
    held: BTreeMap<String, String>,
    /// Names to send (or report absent) even if the client holds them.
    force: BTreeSet<String>,
    /// Send a response even if it is empty (answers a first subscription).
    respond: bool,
    pending: VecDeque<Pending>,
    /// Resources the client rejected alone, name → rejected version; not
    /// sent again until the version changes.
    rejected: BTreeMap<String, String>,
    /// Resources of a NACKed response of several: sent one per response
    /// next, so a NACK tells which one is bad.
    suspect: BTreeSet<String>,
}

impl TypeState {
    fn subscribed(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

struct AdsStream {
    id: u64,
    peer: Option<SocketAddr>,
    node_id: Option<String>,
    identity: StreamIdentity,
    nonce_prefix: String,
    nonces: u64,
    types: BTreeMap<String, TypeState>,
    proxies: Arc<ConnectedProxies>,
}

/// Why a stream ends.
enum End {
    /// The client went away or the server is shutting down.
    Closed,
    /// Tell the client why.
    Error(Status),
}

impl AdsStream {
    fn node(&self) -> &str {
        self.node_id.as_deref().unwrap_or("")
    }

    async fn run(
        mut self,
        mut requests: Streaming<DeltaDiscoveryRequest>,
        mut resources: watch::Receiver<Arc<Resources>>,
        tx: ResponseTx,
    ) {
        debug!(stream = self.id, peer = ?self.peer, "ADS stream opened");
        let end = loop {
            let step = tokio::select! {
                req = requests.message() => match req {
                    Ok(Some(req)) => {
                        let current = resources.borrow().clone();
                        self.on_request(req, &current, &tx).await
                    }
                    Ok(None) => Err(End::Closed),
                    Err(status) => {
                        debug!(stream = self.id, node = self.node(), %status, "ADS request stream failed");
                        Err(End::Closed)
                    }
                },
                changed = resources.changed() => match changed {
                    Ok(()) => {
                        let current = resources.borrow_and_update().clone();
                        self.push_all(&current, &tx).await
                    }
                    Err(_) => Err(End::Error(Status::unavailable("control plane shutting down"))),
                },
                _ = tx.closed() => Err(End::Closed),
            };
            if let Err(end) = step {
                break end;
            }
        };
        if let End::Error(status) = end {
            let _ = tx.send(Err(status)).await;
        }
        self.proxies.disconnected(self.id);
        info!(stream = self.id, node = self.node(), peer = ?self.peer, "ADS stream closed");
    }

    async fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        current: &Resources,
        tx: &ResponseTx,
    ) -> Result<(), End> {
        if self.node_id.is_none() {
            let id = req.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
            if id.is_empty() {
                warn!(stream = self.id, peer = ?self.peer, "first ADS request has no node id");
            } else {
                info!(stream = self.id, node = %id, peer = ?self.peer, "ADS stream from node");
            }
            self.proxies.set_node(self.id, &id);
            self.identity = StreamIdentity {
                account: self.identity.account.take(),
                ..StreamIdentity::of(req.node.as_ref())
            };
            if self.identity.ztunnel {
                info!(stream = self.id, node = %id, "stream from Istio's ztunnel: policies with our AUDIT action are not sent to it");
            }
            self.node_id = Some(id);
        }
        if req.type_url.is_empty() {
            return Err(End::Error(Status::invalid_argument(
                "DeltaDiscoveryRequest without type_url",
            )));
        }
        let type_url = req.type_url.clone();
        let first = !self.types.contains_key(&type_url);
        if first && self.types.len() >= MAX_TYPES {
            return Err(End::Error(Status::resource_exhausted(format!(
                "a stream may subscribe to at most {MAX_TYPES} types"
            ))));
        }
        let ts = self.types.entry(type_url.clone()).or_default();
        if ts.names.len() + req.resource_names_subscribe.len() > MAX_SUBSCRIBED_NAMES {
            warn!(stream = self.id, peer = ?self.peer, %type_url, "too many subscribed names");
            return Err(End::Error(Status::resource_exhausted(format!(
                "a stream may subscribe to at most {MAX_SUBSCRIBED_NAMES} names of a type"
            ))));
        }

        if !req.response_nonce.is_empty() {
            match &req.error_detail {
                Some(detail) => {
                    let message = cut(&detail.message, MAX_NACK_DETAIL);
                    warn!(
                        node = self.node_id.as_deref().unwrap_or(""),
                        %type_url,
                        nonce = %req.response_nonce,
                        code = detail.code,
                        "NACK: {message}"
                    );
                    if let Some(p) = take_pending(ts, &req.response_nonce) {
                        match p.sent.as_slice() {
                            [(name, version)] => {
                                warn!(stream = self.id, %type_url, resource = %name, %version, "resource rejected: not sent again until it changes");
                                ts.rejected.insert(name.clone(), version.clone());
                            }
                            sent => ts.suspect.extend(sent.iter().map(|(n, _)| n.clone())),
                        }
                        // The client kept what it had; so do we.
                        for (name, before) in p.before {
                            if ts.held.get(&name) != p.after.get(&name).and_then(Option::as_ref) {
                                continue; // changed again by a later response
                            }
                            match before {
                                Some(v) => ts.held.insert(name, v),
                                None => ts.held.remove(&name),
                            };
                        }
                    }
                    self.proxies.nacked(
                        self.id,
                        &type_url,
                        &req.response_nonce,
                        message,
                        ts.held.len(),
                    );
                }
                None => {
                    take_pending(ts, &req.response_nonce);
                    debug!(node = self.node_id.as_deref().unwrap_or(""), %type_url, nonce = %req.response_nonce, "ACK");
                    self.proxies.acked(self.id, &type_url, &req.response_nonce);
                }
            }
        }

        let mut changed = first;
        if first {
            ts.wildcard = req.resource_names_subscribe.is_empty()
                || req.resource_names_subscribe.iter().any(|n| n == WILDCARD);
            ts.held = req.initial_resource_versions.clone().into_iter().collect();
            ts.respond = true;
            self.proxies.subscribed(self.id, &type_url);
            debug!(
                stream = self.id,
                %type_url,
                wildcard = ts.wildcard,
                initial = ts.held.len(),
                "subscribed"
            );
        }
        for name in &req.resource_names_subscribe {
            changed = true;
            if name == WILDCARD {
                ts.wildcard = true;
            } else {
                ts.names.insert(name.clone());
                ts.force.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            changed = true;
            if name == WILDCARD {
                ts.wildcard = false;
            } else {
                ts.names.remove(name);
            }
            if !ts.subscribed(name) {
                ts.held.remove(name);
            }
        }
        if changed {
            self.push(&type_url, current, tx).await?;
        }
        Ok(())
    }

    async fn push_all(&mut self, current: &Resources, tx: &ResponseTx) -> Result<(), End> {
        let type_urls: Vec<String> = self.types.keys().cloned().collect();
        for type_url in type_urls {
            self.push(&type_url, current, tx).await?;
        }
        Ok(())
    }

    /// Sends what the client of `type_url` lacks, if anything.
    async fn push(
        &mut self,
        type_url: &str,
        current: &Resources,
        tx: &ResponseTx,
    ) -> Result<(), End> {
        let Some(ts) = self.types.get_mut(type_url) else {
            return Ok(());
        };
        let empty = Default::default();
        let all = current.of_type(type_url).unwrap_or(&empty);
        // Listeners and routes are per waypoint or gateway pod: a stream
        // sees its own only.
        let own = scoped_type(type_url).then(|| self.identity.permitted(current, type_url, all));
        let unknown = matches!(own, Some(None));
        // Borrowed unless scoped or filtered: a push compares against the
        // shared map instead of copying it for every stream and change.
        let mut available: Cow<'_, TypeResources> = match own {
            None => Cow::Borrowed(all),
            Some(own) => Cow::Owned(own.unwrap_or_default()),
        };
        if self.identity.ztunnel {
            let (kept, left_out) = super::ztunnel_compat::for_ztunnel(type_url, available, current);
            available = kept;
            if left_out > 0 && !std::mem::replace(&mut self.identity.withheld_logged, true) {
                info!(stream = self.id, node = self.node_id.as_deref().unwrap_or(""), %type_url, left_out, "AUDIT policies withheld from a ztunnel stream (its Authorization action enum has no AUDIT)");
            }
        }
        if unknown && !std::mem::replace(&mut self.identity.warned, true) {
            warn!(stream = self.id, node = self.node_id.as_deref().unwrap_or(""), %type_url, "stream subscribes to listeners or routes but is no known waypoint or gateway (node metadata NAMESPACE/WAYPOINT, or node id waypoint~<ip>~<pod>.<ns>~... or router~<ip>~<pod>.<ns>~...): it gets none");
        }
        // The rejected are dropped once their version moves on (or they go).
        ts.rejected
            .retain(|name, v| available.get(name).is_some_and(|r| &r.version == v));
        let mut batches = Batches::default();
        for (name, r) in available.iter() {
            if !ts.subscribed(name) {
                continue;
            }
            let held = ts.held.get(name);
            if held == Some(&r.version) && !ts.force.contains(name) {
                continue;
            }
            if ts.rejected.get(name) == Some(&r.version) {
                continue;
            }
            let resource = Resource {
                name: name.clone(),
                version: r.version.clone(),
                resource: Some(r.any.clone()),
                ..Default::default()
            };
            let size = prost::Message::encoded_len(&resource);
            if size > MAX_RESPONSE_BYTES {
                warn!(stream = self.id, node = self.node_id.as_deref().unwrap_or(""), %type_url, resource = %name, size, limit = MAX_RESPONSE_BYTES, "resource too large to send: skipped until it changes");
                ts.rejected.insert(name.clone(), r.version.clone());
                continue;
            }
            let alone = ts.suspect.remove(name);
            batches.add(held.cloned(), resource, size, alone);
        }
        let mut removed = Vec::new();
        for (name, version) in &ts.held {
            if !available.contains_key(name) {
                removed.push((name.clone(), Some(version.clone())));
            }
        }
        // Explicitly requested names that do not exist: say so.
        for name in &ts.force {
            if !available.contains_key(name) && !ts.held.contains_key(name) {
                removed.push((name.clone(), None));
            }
        }
        ts.force.clear();
        let mut responses = batches.finish(removed);
        if responses.is_empty() {
            if !std::mem::take(&mut ts.respond) {
                self.proxies
                    .up_to_date(self.id, type_url, current.generation);
                return Ok(());
            }
            responses.push(Batch::default());
        }
        ts.respond = false;

        for batch in responses {
            let Some(ts) = self.types.get_mut(type_url) else {
                return Ok(());
            };
            let mut before = batch.before;
            for r in &batch.resources {
                ts.held.insert(r.name.clone(), r.version.clone());
            }
            for (name, held) in &batch.removed {
                before.push((name.clone(), held.clone()));
                ts.held.remove(name);
            }
            let removed: Vec<String> = batch.removed.into_iter().map(|(n, _)| n).collect();
            self.nonces += 1;
            let nonce = format!("{}-{}-{}", self.nonce_prefix, self.id, self.nonces);
            let after = before
                .iter()
                .map(|(n, _)| (n.clone(), ts.held.get(n).cloned()))
                .collect();
            let sent = batch
                .resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect();
            ts.pending.push_back(Pending {
                nonce: nonce.clone(),
                sent,
                before,
                after,
            });
            if ts.pending.len() > MAX_PENDING {
                ts.pending.pop_front();
            }
            debug!(
                node = self.node_id.as_deref().unwrap_or(""),
                %type_url,
                %nonce,
                generation = current.generation,
                sent = batch.resources.len(),
                removed = removed.len(),
                "push"
            );
            self.proxies
                .sent(self.id, type_url, current.generation, &nonce, ts.held.len());
            let resp = DeltaDiscoveryResponse {
                system_version_info: current.generation.to_string(),
                resources: batch.resources,
                type_url: type_url.to_string(),
                nonce,
                removed_resources: removed,
                ..DeltaDiscoveryResponse::default()
            };
            tx.send(Ok(resp)).await.map_err(|_| End::Closed)?;
        }
        Ok(())
    }
}

/// One response's worth: resources with what the client held before, and
/// removals (name, held before).
#[derive(Default)]
struct Batch {
    resources: Vec<Resource>,
    before: Vec<(String, Option<String>)>,
    removed: Vec<(String, Option<String>)>,
    bytes: usize,
}

/// Groups a push into responses: suspects alone, the rest filled up to
/// [`MAX_RESPONSE_BYTES`].
#[derive(Default)]
struct Batches {
    done: Vec<Batch>,
    open: Batch,
}

impl Batches {
    fn add(&mut self, held: Option<String>, resource: Resource, size: usize, alone: bool) {
        let target = if alone {
            self.done.push(Batch::default());
            self.done.last_mut().expect("just pushed")
        } else {
            if self.open.bytes + size > MAX_RESPONSE_BYTES && !self.open.resources.is_empty() {
                self.done.push(std::mem::take(&mut self.open));
            }
            &mut self.open
        };
        target.before.push((resource.name.clone(), held));
        target.resources.push(resource);
        target.bytes += size;
    }

    /// The responses to send; removals ride with the first.
    fn finish(mut self, removed: Vec<(String, Option<String>)>) -> Vec<Batch> {
        if !self.open.resources.is_empty() || !removed.is_empty() {
            self.open.removed = removed;
            self.done.insert(0, self.open);
        }
        self.done
    }
}

/// At most `max` characters of `text`.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn take_pending(ts: &mut TypeState, nonce: &str) -> Option<Pending> {
    let i = ts.pending.iter().position(|p| p.nonce == nonce)?;
    ts.pending.remove(i)
}
