//! Keeps the kernel and the open connections in line with the policies:
//! after every view update (and when pods are enrolled or unenrolled, which
//! other processes do, so the enrolment map is polled), it
//! - rewrites `strict_pods` (pods no plaintext client may reach),
//! - recompiles `deny_connect` (DENYs the kernel enforces at `connect()`),
//! - closes established connections the policies no longer allow.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use super::{route::MeshView, xds_view};
use crate::{
    capture::{deny::KernelDenies, enroll::Enroller, strict::StrictPods},
    policy::{
        kernel::{self, KernelDeny, LocalPod},
        live::LiveConnections,
    },
};

/// How often enrolment is re-read (enrolment is a map update by another
/// process; there is no event for it).
const ENROLMENT_POLL: Duration = Duration::from_secs(1);

pub struct PolicySync {
    pub strict: StrictPods,
    pub denies: KernelDenies,
    pub enroller: Enroller,
    pub live: Arc<LiveConnections>,
    /// What `deny_connect` holds, with the policy behind each entry.
    pub compiled: Arc<Mutex<Vec<KernelDeny>>>,
}

fn local_pods(enroller: &Enroller) -> Vec<LocalPod> {
    enroller
        .list()
        .into_iter()
        .filter_map(|p| {
            Some(LocalPod {
                netns_cookie: p.netns_cookie,
                ip: p.pod_ip?,
            })
        })
        .collect()
}

impl PolicySync {
    fn apply(&mut self, view: &MeshView, pods: &[LocalPod], view_changed: bool) {
        if view_changed {
            if let Err(error) = self.strict.set(&xds_view::plaintext_denied_ips(view)) {
                tracing::warn!(%error, "cannot update strict_pods");
            }
            let closed = self.live.enforce(view);
            if closed > 0 {
                tracing::info!(closed, "policy update closed established connections");
            }
        }
        let mut entries = kernel::compile(view, pods);
        let capacity = mesh_common::DENY_CONNECT_ENTRIES as usize;
        if entries.len() > capacity {
            tracing::warn!(
                entries = entries.len(),
                capacity,
                "more kernel denies than the map holds; the rest is enforced by the proxy"
            );
            entries.truncate(capacity);
        }
        let keys: Vec<_> = entries.iter().map(|e| e.key).collect();
        match self.denies.set(&keys) {
            Ok(n) => tracing::debug!(entries = n, "deny_connect updated"),
            Err(error) => tracing::warn!(%error, "cannot update deny_connect"),
        }
        *self.compiled.lock().unwrap_or_else(|e| e.into_inner()) = entries;
    }

    pub async fn run(mut self, mut views: watch::Receiver<Arc<MeshView>>) {
        let mut tick = tokio::time::interval(ENROLMENT_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pods: Vec<(u64, std::net::IpAddr)> = Vec::new();
        let mut view_changed = true;
        loop {
            let view = views.borrow_and_update().clone();
            let pods = local_pods(&self.enroller);
            let pod_key: Vec<_> = pods.iter().map(|p| (p.netns_cookie, p.ip)).collect();
            if view_changed || pod_key != last_pods {
                self.apply(&view, &pods, view_changed);
                last_pods = pod_key;
            }
            tokio::select! {
                changed = views.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    view_changed = true;
                }
                _ = tick.tick() => view_changed = false,
            }
        }
    }
}
