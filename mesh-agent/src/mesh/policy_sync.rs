//! Keeps the kernel and the open connections in line with the policies:
//! after every view update (and when pods are enrolled or unenrolled, which
//! other processes do, so the enrolment map is polled), it
//! - empties `fast_path` (same-node pairs the agent authorized on an older
//!   view), before anything else,
//! - rewrites `probe_ports` (the ports of those pods the kubelet probes
//!   from the node address), then `strict_pods` (pods no plaintext client
//!   may reach), in that order so a pod turning STRICT never drops a probe,
//! - recompiles `deny_connect` (DENYs the kernel enforces at `connect()`),
//! - closes established connections the policies no longer allow.
//!
//! It records the generation of the last view the kernel holds
//! ([`PolicyGenerations`], shown by `/stats/mesh` beside the served view's).
use std::{
    collections::BTreeSet,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    capture::{deny::KernelDenies, enroll::Enroller, probes::ProbePorts, strict::StrictPods},
    policy::{
        kernel::{self, KernelDeny, LocalPod},
        live::LiveConnections,
    },
    state::{runtime::PolicyGenerations, view::MeshView},
};

/// How often enrolment is re-read (enrolment is a map update by another
/// process; there is no event for it).
const ENROLMENT_POLL: Duration = Duration::from_secs(1);

pub struct PolicySync {
    pub strict: StrictPods,
    pub probes: ProbePorts,
    pub denies: KernelDenies,
    pub enroller: Enroller,
    pub live: Arc<LiveConnections>,
    /// What `deny_connect` holds, with the policy behind each entry.
    pub compiled: Arc<Mutex<Vec<KernelDeny>>>,
    /// The views taken, and the last one the kernel holds.
    pub generations: Arc<PolicyGenerations>,
    /// The same-node fast path's authorized pairs, emptied on every pass.
    pub fast_path: Option<Arc<crate::capture::fast_path::FastPath>>,
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

/// At most `capacity` probe ports (the map's size); the rest is left out
/// with a warning: those probes fail against their STRICT pods.
fn bounded(mut wanted: BTreeSet<(IpAddr, u16)>, capacity: usize) -> BTreeSet<(IpAddr, u16)> {
    if wanted.len() > capacity {
        let left_out = wanted.len() - capacity;
        let first_left_out = *wanted.iter().nth(capacity).expect("more than capacity");
        wanted.split_off(&first_left_out);
        tracing::warn!(
            capacity,
            left_out,
            "more probe ports of STRICT pods than probe_ports holds; \
             the kubelet's probes to the rest are dropped"
        );
    }
    wanted
}

/// Addresses of this node's mesh pods that no plaintext client may reach:
/// STRICT mTLS (istiod's converted DENY-without-principal policy) or any
/// policy set that admits no identity-less source (policy/kernel.rs).
fn plaintext_denied_ips(view: &MeshView) -> BTreeSet<IpAddr> {
    view.local_workloads()
        .filter(|w| crate::policy::kernel::plaintext_always_denied(&view.policies.applicable(w)))
        .flat_map(|w| w.ips.iter().copied())
        .collect()
}

/// The (address, port) pairs that take plaintext from the node address
/// although their pod is in `strict`: every port the kubelet probes
/// (`probe_ports` of the Workload resource) of every local workload with an
/// address in `strict`. Pods outside `strict` need no entry (the kernel
/// does not judge them), so the map stays as small as the STRICT set.
fn probe_ports(view: &MeshView, strict: &BTreeSet<IpAddr>) -> BTreeSet<(IpAddr, u16)> {
    view.local_workloads()
        .flat_map(|w| {
            w.ips
                .iter()
                .filter(|ip| strict.contains(ip))
                .flat_map(|ip| w.probe_ports.iter().map(move |port| (*ip, *port)))
        })
        .collect()
}

/// What one pass of [`PolicySync::apply`] wrote.
struct Written {
    /// `probe_ports` and `strict_pods`, written on view changes only
    /// (`None` on other passes).
    view_maps: Option<bool>,
    deny_connect: bool,
}

impl PolicySync {
    fn apply(&mut self, view: &MeshView, pods: &[LocalPod], view_changed: bool) -> Written {
        // First: no pair decided on an older view or for a pod that came
        // or went may skip the agent from here on.
        if let Some(fast_path) = &self.fast_path {
            let removed = fast_path.clear(view.generation);
            if removed > 0 {
                tracing::debug!(removed, "fast-path pairs forgotten");
            }
        }
        let mut view_maps = None;
        if view_changed {
            let strict = plaintext_denied_ips(view);
            let probes = bounded(
                probe_ports(view, &strict),
                mesh_common::PROBE_PORT_ENTRIES as usize,
            );
            let mut written = true;
            if let Err(error) = self.probes.set(&probes) {
                tracing::warn!(%error, "cannot update probe_ports");
                written = false;
            }
            if let Err(error) = self.strict.set(&strict) {
                tracing::warn!(%error, "cannot update strict_pods");
                written = false;
            }
            view_maps = Some(written);
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
        let deny_connect = match self.denies.set(&keys) {
            Ok(n) => {
                tracing::debug!(entries = n, "deny_connect updated");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot update deny_connect");
                false
            }
        };
        *self.compiled.lock().unwrap_or_else(|e| e.into_inner()) = entries;
        Written {
            view_maps,
            deny_connect,
        }
    }

    pub async fn run(mut self, mut views: watch::Receiver<Arc<MeshView>>) {
        let mut tick = tokio::time::interval(ENROLMENT_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pods: Vec<(u64, std::net::IpAddr)> = Vec::new();
        let mut view_changed = true;
        // Whether the maps written on view changes hold the current view.
        let mut view_maps_written = false;
        loop {
            let view = views.borrow_and_update().clone();
            let pods = local_pods(&self.enroller);
            let pod_key: Vec<_> = pods.iter().map(|p| (p.netns_cookie, p.ip)).collect();
            if view_changed || pod_key != last_pods {
                let written = self.apply(&view, &pods, view_changed);
                if let Some(view_maps) = written.view_maps {
                    view_maps_written = view_maps;
                }
                if view_maps_written && written.deny_connect {
                    self.generations.applied(view.generation);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::workload;

    #[test]
    fn probe_ports_beyond_the_map_size_are_left_out() {
        let ip: IpAddr = "10.244.1.2".parse().unwrap();
        let wanted: BTreeSet<(IpAddr, u16)> = (1..=5).map(|port| (ip, port)).collect();
        assert_eq!(bounded(wanted.clone(), 5), wanted);
        let kept = bounded(wanted, 3);
        assert_eq!(kept, (1..=3).map(|port| (ip, port)).collect());
    }

    #[test]
    fn probe_ports_are_those_of_local_strict_pods() {
        let mut strict_local = workload("a", "10.244.1.2", "n1", true);
        strict_local.ips.push("fd00::2".parse().unwrap());
        strict_local.probe_ports = vec![8080, 9090];
        let mut permissive_local = workload("b", "10.244.1.3", "n1", true);
        permissive_local.probe_ports = vec![8080];
        let mut remote = workload("c", "10.244.2.2", "n2", true);
        remote.probe_ports = vec![8080];
        let view = MeshView::new("n1", vec![strict_local, permissive_local, remote], vec![]);
        let strict: BTreeSet<IpAddr> = ["10.244.1.2", "fd00::2", "10.244.2.2"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();

        let got = probe_ports(&view, &strict);
        let want: BTreeSet<(IpAddr, u16)> = [
            ("10.244.1.2", 8080),
            ("10.244.1.2", 9090),
            ("fd00::2", 8080),
            ("fd00::2", 9090),
        ]
        .iter()
        .map(|(ip, port)| (ip.parse().unwrap(), *port))
        .collect();
        assert_eq!(got, want);
    }
}
