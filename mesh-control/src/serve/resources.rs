//! The encoded, versioned resources all ADS streams serve, rebuilt once per
//! `MeshState` change (not per stream). A resource's version is a hash of
//! its encoding, so it is stable across control-plane restarts of the same
//! build and a reconnecting client's `initial_resource_versions` match.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use mesh_xds::{
    proto::to_any, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use sha2::{Digest, Sha256};
use tokio::{sync::watch, task::JoinHandle};

use super::proxies::ConnectedProxies;
use crate::{
    model::{MeshState, WaypointRef},
    translate::{
        waypoint,
        workload::{self, ConvertOptions},
    },
};

/// One resource ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedResource {
    pub version: String,
    pub any: mesh_xds::proto::wkt::Any,
}

/// Name → resource, for one type URL.
pub type TypeResources = BTreeMap<String, Arc<VersionedResource>>;

/// Everything served, per type URL.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Increments on every change; sent as `system_version_info`.
    pub generation: u64,
    pub by_type: BTreeMap<String, TypeResources>,
    /// `<pod name>.<namespace>` of every waypoint pod → its waypoint, to
    /// recognise a waypoint stream by its node id alone.
    pub waypoint_pods: BTreeMap<String, WaypointRef>,
    /// `<pod name>.<namespace>` of every ingress gateway pod → its
    /// listeners and routes (docs/contracts/gateway-xds.md).
    pub gateway_pods: BTreeMap<String, GatewayPodResources>,
    /// Authorization names Istio's ztunnel cannot decode (our AUDIT
    /// action), not sent to its streams (super::ztunnel_compat).
    pub ztunnel_withheld: BTreeSet<String>,
}

/// The scoped resources of one ingress gateway pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayPodResources {
    /// `(namespace, service account)` of the pod: with authentication,
    /// only a stream with this account's token gets them.
    pub account: (String, String),
    pub listeners: TypeResources,
    pub routes: TypeResources,
}

impl GatewayPodResources {
    /// The resources of `type_url` (Listener or RouteConfiguration).
    pub fn of_type(&self, type_url: &str) -> Option<&TypeResources> {
        match type_url {
            LISTENER_TYPE_URL => Some(&self.listeners),
            ROUTE_TYPE_URL => Some(&self.routes),
            _ => None,
        }
    }
}

/// First 16 hex digits of the SHA-256 of the encoded resource.
pub fn version_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn versioned<M: prost::Message>(type_url: &str, msg: &M) -> Arc<VersionedResource> {
    versioned_bytes(type_url, to_any(type_url, msg).value)
}

/// `bytes` already encoded (deterministically, see [`super::canonical`]).
fn versioned_bytes(type_url: &str, bytes: Vec<u8>) -> Arc<VersionedResource> {
    Arc::new(VersionedResource {
        version: version_of(&bytes),
        any: mesh_xds::proto::wkt::Any {
            type_url: type_url.to_string(),
            value: bytes,
        },
    })
}

impl Resources {
    /// Converts and encodes a whole mesh state.
    pub fn build(state: &MeshState, opts: &ConvertOptions, generation: u64) -> Self {
        let addresses = workload::addresses(state, opts)
            .into_iter()
            .map(|(name, a)| (name, versioned(ADDRESS_TYPE_URL, &a)))
            .collect();
        let policies = workload::authorizations(state, opts);
        let ztunnel_withheld =
            super::ztunnel_compat::withheld(policies.iter().map(|(n, p)| (n, p)));
        let authorizations = policies
            .into_iter()
            .map(|(name, a)| (name, versioned(AUTHORIZATION_TYPE_URL, &a)))
            .collect();
        let mut envoy = waypoint::translate(state, &opts.root_namespace);
        let gateway_pods = std::mem::take(&mut envoy.gateways)
            .into_iter()
            .map(|(pod, gw)| {
                let resources = GatewayPodResources {
                    account: (gw.namespace, gw.service_account),
                    listeners: encode(LISTENER_TYPE_URL, gw.listeners).1,
                    routes: encode(ROUTE_TYPE_URL, gw.routes).1,
                };
                (pod, resources)
            })
            .collect();
        fn encode<M: prost::Message>(
            type_url: &str,
            items: BTreeMap<String, M>,
        ) -> (String, TypeResources) {
            let encoded = items
                .into_iter()
                .map(|(name, m)| (name, versioned(type_url, &m)))
                .collect();
            (type_url.to_string(), encoded)
        }
        let by_type = BTreeMap::from([
            (ADDRESS_TYPE_URL.to_string(), addresses),
            (AUTHORIZATION_TYPE_URL.to_string(), authorizations),
            encode(LISTENER_TYPE_URL, envoy.listeners),
            encode(ROUTE_TYPE_URL, envoy.routes),
            (
                CLUSTER_TYPE_URL.to_string(),
                envoy
                    .clusters
                    .into_iter()
                    .map(|(name, c)| {
                        let bytes = super::canonical::cluster_bytes(&c);
                        (name, versioned_bytes(CLUSTER_TYPE_URL, bytes))
                    })
                    .collect(),
            ),
            encode(ENDPOINT_TYPE_URL, envoy.endpoints),
        ]);
        let waypoint_pods = state
            .waypoints
            .values()
            .flat_map(|wp| {
                wp.pods.iter().filter_map(|uid| {
                    let w = state.workloads.get(uid)?;
                    Some((format!("{}.{}", w.name, w.namespace), wp.reference()))
                })
            })
            .collect();
        Resources {
            generation,
            by_type,
            waypoint_pods,
            gateway_pods,
            ztunnel_withheld,
        }
    }

    /// Resources of one type (empty for a type we do not serve).
    pub fn of_type(&self, type_url: &str) -> Option<&TypeResources> {
        self.by_type.get(type_url)
    }

    /// Same names and versions (the generation aside).
    fn same_content(&self, other: &Resources) -> bool {
        self.waypoint_pods == other.waypoint_pods
            && self.gateway_pods == other.gateway_pods
            && self.ztunnel_withheld == other.ztunnel_withheld
            && self.by_type.len() == other.by_type.len()
            && self
                .by_type
                .iter()
                .zip(&other.by_type)
                .all(|((ta, a), (tb, b))| {
                    ta == tb
                        && a.len() == b.len()
                        && a.iter()
                            .zip(b)
                            .all(|((na, ra), (nb, rb))| na == nb && ra.version == rb.version)
                })
    }
}

/// Keeps `Resources` in step with the mesh state. The returned receiver
/// changes only when some resource did. If the state's sender goes away the
/// last resources stay served. Dropping (aborting) the task closes the
/// channel, which ends every ADS stream.
pub fn spawn_builder(
    mut state: watch::Receiver<Arc<MeshState>>,
    opts: ConvertOptions,
    proxies: Arc<ConnectedProxies>,
) -> (watch::Receiver<Arc<Resources>>, JoinHandle<()>) {
    let first = Resources::build(&state.borrow_and_update(), &opts, 1);
    proxies.set_server_version(first.generation);
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let mesh = state.borrow_and_update().clone();
            let current = tx.borrow().clone();
            let next = Resources::build(&mesh, &opts, current.generation + 1);
            if next.same_content(&current) {
                proxies.evaluated_unchanged();
                continue;
            }
            tracing::info!(
                generation = next.generation,
                workloads = mesh.workloads.len(),
                services = mesh.services.len(),
                "mesh state changed"
            );
            proxies.set_server_version(next.generation);
            tx.send_replace(Arc::new(next));
        }
        tracing::debug!("mesh state source gone; serving the last state");
        // Keep the sender (and so the streams) alive.
        tx.closed().await;
    });
    (rx, task)
}
