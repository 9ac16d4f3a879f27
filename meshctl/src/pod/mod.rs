//! istioctl's pod targets: `<pod>.<namespace>` or `<pod>`, resolved with
//! the control plane's `/config_dump` (its `workloads` carry each pod's IPs
//! and node, its `nodes` each node's address) to a network namespace under
//! `/run/netns`: the pod's own (a waypoint's or gateway's admin) or its
//! node's (the agent's admin). A namespace is found by the address it
//! holds; when several hold it (parallel test meshes reuse addresses), the
//! one named `<name>` or `…-<name>` wins, then the one sharing the control
//! plane's namespace prefix.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use nix::sched::CloneFlags;
use serde::Deserialize;
use serde_json::Value;

/// `<pod>.<namespace>` or `<pod>`, split at the last dot as istioctl does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub namespace: Option<String>,
}

impl PodRef {
    pub fn parse(text: &str) -> Option<PodRef> {
        let text = text.trim();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        match text.rsplit_once('.') {
            Some((name, ns)) if valid(name) && valid(ns) => Some(PodRef {
                name: name.into(),
                namespace: Some(ns.into()),
            }),
            None if valid(text) => Some(PodRef {
                name: text.into(),
                namespace: None,
            }),
            _ => None,
        }
    }

    /// `name.ns` or `name`, for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}.{ns}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A workload of the control plane's `/config_dump`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub identity: String,
    pub ips: Vec<String>,
    pub node: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub mesh: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct NodeInfo {
    name: String,
    address: String,
}

/// The workload `pod` names in the control plane's dump `doc`; an error
/// names the pod and, when the namespace is missing and the name is
/// ambiguous, the namespaces holding it.
pub fn find_pod(doc: &Value, pod: &PodRef) -> anyhow::Result<PodInfo> {
    let all: Vec<PodInfo> = doc["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| serde_json::from_value(w.clone()).ok())
        .collect();
    let hits: Vec<PodInfo> = all
        .into_iter()
        .filter(|w| {
            w.name == pod.name && pod.namespace.as_deref().is_none_or(|ns| ns == w.namespace)
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!(
            "the control plane knows no pod {} (see `meshctl pc workload <node>`)",
            pod.describe()
        ),
        many => {
            let namespaces: Vec<&str> = many.iter().map(|w| w.namespace.as_str()).collect();
            anyhow::bail!(
                "pod {} is in several namespaces ({}): write <pod>.<namespace>",
                pod.name,
                namespaces.join(", ")
            )
        }
    }
}

/// The address of `node` in the control plane's dump.
pub fn node_address(doc: &Value, node: &str) -> anyhow::Result<IpAddr> {
    let nodes: Vec<NodeInfo> = doc["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| serde_json::from_value(n.clone()).ok())
        .collect();
    let n = nodes
        .iter()
        .find(|n| n.name == node)
        .with_context(|| format!("the control plane's config_dump lists no node {node:?}"))?;
    n.address
        .parse()
        .with_context(|| format!("node {node}: address {:?} is no IP", n.address))
}

/// The first IP of a pod.
pub fn pod_ip(pod: &PodInfo) -> anyhow::Result<IpAddr> {
    pod.ips
        .iter()
        .find_map(|ip| ip.parse().ok())
        .with_context(|| format!("pod {}.{} has no IP", pod.name, pod.namespace))
}

/// Whether the network namespace at `path` has `ip` on an interface
/// (checked on a thread of its own, which enters it).
fn holds_ip(path: PathBuf, ip: IpAddr) -> bool {
    std::thread::spawn(move || {
        let Ok(file) = std::fs::File::open(&path) else {
            return false;
        };
        if nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).is_err() {
            return false;
        }
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return false;
        };
        addrs.into_iter().any(|a| {
            let Some(sa) = a.address else { return false };
            match ip {
                IpAddr::V4(v4) => sa.as_sockaddr_in().is_some_and(|s| s.ip() == v4),
                IpAddr::V6(v6) => sa.as_sockaddr_in6().is_some_and(|s| s.ip() == v6),
            }
        })
    })
    .join()
    .unwrap_or(false)
}

/// Picks among the namespaces holding an address (see the module docs).
pub fn pick(candidates: &[String], name: &str, control_netns: Option<&str>) -> Vec<String> {
    let mut left: Vec<String> = candidates.to_vec();
    if left.len() > 1 {
        let suffix = format!("-{name}");
        let named: Vec<String> = left
            .iter()
            .filter(|c| *c == name || c.ends_with(&suffix))
            .cloned()
            .collect();
        if !named.is_empty() {
            left = named;
        }
    }
    if let (true, Some(control)) = (left.len() > 1, control_netns) {
        let prefix = control.rsplit_once('-').map_or(control, |(p, _)| p);
        let same: Vec<String> = left
            .iter()
            .filter(|c| c.starts_with(&format!("{prefix}-")))
            .cloned()
            .collect();
        if !same.is_empty() {
            left = same;
        }
    }
    left
}

/// The network namespace under `dir` holding `ip`, for `what` named `name`.
pub fn netns_of(
    dir: &Path,
    ip: IpAddr,
    name: &str,
    what: &str,
    control_netns: Option<&str>,
) -> anyhow::Result<String> {
    let mut candidates = vec![];
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries.flatten() {
        let ns = entry.file_name().to_string_lossy().into_owned();
        if holds_ip(entry.path(), ip) {
            candidates.push(ns);
        }
    }
    candidates.sort();
    match pick(&candidates, name, control_netns).as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!(
            "no network namespace in {} holds {ip}, the address of {what} {name} \
             (meshctl reaches admin endpoints through the namespaces; root needed)",
            dir.display()
        ),
        many => anyhow::bail!(
            "several network namespaces hold {ip} ({what} {name}): {}; pass one as the target",
            many.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests;
