//! Which pod an address belongs to. A finished pod (phase Succeeded or
//! Failed) keeps `status.podIP` while its address is handed to a new pod,
//! and the API server briefly shows two live pods with one address while a
//! kubelet catches up; neither may take the address from the pod that
//! really holds it. Finished pods are no workloads at all; among live pods
//! the owner is the Running one, then the newest `creationTimestamp`, then
//! the smallest `namespace/name`, so every control plane replica and every
//! rebuild picks the same pod, and the others are left out with a warning
//! naming both.
use std::{cmp::Reverse, collections::HashMap, net::IpAddr};

use super::objects::PodObj;

/// `status.phase` of a Pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum PodPhase {
    /// Absent or not one of Kubernetes' phases.
    #[default]
    Unknown,
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn parse(phase: Option<&str>) -> PodPhase {
        match phase {
            Some("Pending") => PodPhase::Pending,
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Unknown,
        }
    }

    /// Its containers have stopped for good: it serves nothing and its
    /// address may already belong to another pod.
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Preference of a live pod when two claim one address.
    fn rank(self) -> u8 {
        match self {
            PodPhase::Running => 2,
            PodPhase::Pending | PodPhase::Unknown => 1,
            PodPhase::Succeeded | PodPhase::Failed => 0,
        }
    }
}

/// What to do with one pod of the load.
pub(crate) enum Claim<'a> {
    /// A workload with its addresses.
    Owner,
    /// Finished: not a workload.
    Terminal,
    /// Another live pod holds one of its addresses.
    Displaced { ip: IpAddr, by: &'a PodObj },
}

/// The owners of pod addresses among `pods` (host-network pods share
/// their node's address and claim none).
pub(crate) struct PodOwners<'a> {
    owners: HashMap<IpAddr, &'a PodObj>,
}

impl<'a> PodOwners<'a> {
    pub fn new(pods: &'a [PodObj]) -> Self {
        let mut owners: HashMap<IpAddr, &'a PodObj> = HashMap::new();
        let claimants = pods
            .iter()
            .filter(|p| !p.host_network && !p.phase.is_terminal());
        for pod in claimants {
            for ip in &pod.ips {
                owners
                    .entry(*ip)
                    .and_modify(|held| {
                        if preference(pod) > preference(held) {
                            *held = pod;
                        }
                    })
                    .or_insert(pod);
            }
        }
        PodOwners { owners }
    }

    pub fn claim(&self, pod: &PodObj) -> Claim<'a> {
        if pod.phase.is_terminal() {
            return Claim::Terminal;
        }
        if pod.host_network {
            return Claim::Owner;
        }
        for ip in &pod.ips {
            match self.owners.get(ip) {
                Some(by) if !std::ptr::eq(*by, pod) => return Claim::Displaced { ip: *ip, by },
                _ => {}
            }
        }
        Claim::Owner
    }
}

/// Larger wins: Running, then newest creationTimestamp (RFC 3339 in UTC as
/// the API server writes it, so text order is time order; absent is
/// oldest), then smallest namespace/name.
fn preference(pod: &PodObj) -> (u8, Option<&str>, Reverse<(&str, &str)>) {
    (
        pod.phase.rank(),
        pod.created.as_deref(),
        Reverse((pod.namespace.as_str(), pod.name.as_str())),
    )
}

#[cfg(test)]
mod tests;
