//! Following the xDS client: every new snapshot goes to the ClusterManager
//! and to the route stack (a waypoint's one listener) or the gateway's
//! listener manager; `synced` tells readiness whether every type arrived.
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use envoy_types::pb::envoy::config::listener::v3::Listener;
use mesh_xds::{XdsResource, LISTENER_TYPE_URL, ROUTE_TYPE_URL};
use tokio::sync::watch;

use super::{wiring::ClusterManager, TYPE_URLS};
use crate::{config::ActiveConfig, gateway::ListenerManager, route::Proxy};

/// Applies every new xDS snapshot: clusters/endpoints to the
/// ClusterManager, listener + routes to the route stack (a config that
/// cannot be built leaves the previous one serving); keeps `synced` true
/// once every type in [`TYPE_URLS`] arrived. Returns when the client stops.
pub async fn follow(
    rx: watch::Receiver<Arc<mesh_xds::XdsSnapshot>>,
    proxy: Arc<Proxy>,
    clusters: Arc<ClusterManager>,
    synced: Arc<AtomicBool>,
    listener_name: String,
) {
    follow_with(
        rx,
        clusters,
        synced,
        |snap| match ActiveConfig::from_snapshot(snap, &listener_name) {
            Ok(c) => {
                tracing::info!(
                    generation = c.generation,
                    virtual_hosts = c.table.vhosts.len(),
                    "routing config applied"
                );
                proxy.apply(Arc::new(c));
            }
            Err(error) => tracing::warn!(
                %error,
                "routing config not applied; the previous one keeps serving"
            ),
        },
    )
    .await
}

/// As [`follow`], for a gateway: every Listener to the listener manager
/// (which binds, updates and removes them).
pub async fn follow_gateway(
    rx: watch::Receiver<Arc<mesh_xds::XdsSnapshot>>,
    listeners: Arc<ListenerManager>,
    clusters: Arc<ClusterManager>,
    synced: Arc<AtomicBool>,
) {
    let directory = clusters.clone();
    follow_with(rx, clusters, synced, |snap| {
        listeners
            .tcp_upstreams()
            .apply_snapshot(snap, &directory.directory());
        let all: Vec<&Listener> = snap
            .resources(LISTENER_TYPE_URL)
            .filter_map(|(_, r)| match &*r.resource {
                XdsResource::Listener(l) => Some(&**l),
                _ => None,
            })
            .collect();
        let routes = |name: &str| match snap.get(ROUTE_TYPE_URL, name).map(|r| &*r.resource) {
            Some(XdsResource::RouteConfiguration(rc)) => Some(&**rc),
            _ => None,
        };
        let errors = listeners.apply(&all, routes);
        tracing::info!(
            generation = snap.generation,
            listeners = all.len(),
            not_applied = errors.len(),
            "gateway listeners applied"
        );
    })
    .await
}

async fn follow_with(
    mut rx: watch::Receiver<Arc<mesh_xds::XdsSnapshot>>,
    clusters: Arc<ClusterManager>,
    synced: Arc<AtomicBool>,
    mut apply: impl FnMut(&mesh_xds::XdsSnapshot),
) {
    let mut applied = None;
    loop {
        let snap = rx.borrow_and_update().clone();
        if applied != Some(snap.generation) {
            applied = Some(snap.generation);
            clusters.apply(&snap);
            apply(&snap);
        }
        synced.store(
            TYPE_URLS.iter().all(|t| snap.synced.contains(*t)),
            Ordering::Relaxed,
        );
        if rx.changed().await.is_err() {
            return;
        }
    }
}
