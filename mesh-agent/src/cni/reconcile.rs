//! Converging the kernel's enrolment map to the xDS view, for the pods the
//! agent knows of. Runs on start and on every view change:
//! - a recorded pod whose network namespace is gone (deleted while the
//!   agent was down, or a DEL that never reached it) loses its record and
//!   its cookie leaves the map;
//! - a recorded pod whose decision changed (its namespace's
//!   `istio.io/dataplane-mode` label flipped, say) is enrolled or unenrolled
//!   live;
//! - a mesh pod of this node with an address but no record (it predates
//!   the plugin's install) is looked for among the network namespaces of
//!   `<proc-root>/*/ns/net` and `<netns-dir>/*`, by its address.
use std::{
    collections::{BTreeSet, HashSet},
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{decide::decide, records::PodRecord, CniCore};
use crate::{capture::netns, state::view::MeshView};

/// At most this many candidate namespace paths are looked at per scan.
const SCAN_LIMIT: usize = 100_000;

impl CniCore {
    /// One pass over the records, then the scan for unrecorded pods.
    pub fn reconcile(&mut self, view: &MeshView) {
        // The kernel is the truth, not the record: maps replaced after a
        // layout change come back empty and must be refilled.
        let in_map: HashSet<u64> = self
            .enroller
            .list()
            .iter()
            .map(|p| p.netns_cookie)
            .collect();
        for record in self.records.all() {
            let alive =
                matches!(netns::cookie_of(&record.netns), Ok(c) if c == record.netns_cookie);
            if !alive {
                self.forget(&record, "network namespace is gone");
                continue;
            }
            let Some(decision) = decide(view, &record.pod_namespace, &record.pod_name) else {
                continue;
            };
            let enrolled = in_map.contains(&record.netns_cookie);
            if decision.enroll != enrolled || decision.enroll != record.enrolled {
                let mut updated = record.clone();
                match self.apply(&record.netns, decision.enroll) {
                    Ok(_) => {
                        updated.enrolled = decision.enroll;
                        tracing::info!(pod = %record.pod(), enrolled = decision.enroll, reason = %decision.reason, "reconciled: enrolment changed");
                        if let Err(error) = self.records.save(&updated) {
                            tracing::warn!(pod = %record.pod(), error = %error, "cannot update pod record");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(pod = %record.pod(), error = %error, "reconcile: cannot change enrolment")
                    }
                }
            }
        }
        self.discover(view);
    }

    /// Drops a record and takes its cookie out of the map.
    pub fn forget(&mut self, record: &PodRecord, reason: &str) {
        match self.enroller.unenroll_cookie(record.netns_cookie) {
            Ok(was) => {
                tracing::info!(pod = %record.pod(), cookie = record.netns_cookie, was_enrolled = was, reason, "unenrolled and record dropped")
            }
            Err(error) => {
                tracing::warn!(pod = %record.pod(), error = %error, "cannot remove the cookie of a gone pod")
            }
        }
        if let Err(error) = self.records.remove(&record.container_id) {
            tracing::warn!(pod = %record.pod(), error = %error, "cannot remove pod record");
        }
    }

    /// Local mesh pods with an address, no record and not enrolled yet.
    fn unrecorded(&self, view: &MeshView) -> Vec<(String, String, Vec<IpAddr>)> {
        let recorded: HashSet<String> = self.records.all().iter().map(PodRecord::pod).collect();
        let enrolled: HashSet<IpAddr> = self
            .enroller
            .list()
            .into_iter()
            .filter_map(|p| p.pod_ip)
            .collect();
        view.local_workloads()
            .filter(|w| !w.ips.is_empty())
            .filter(|w| !recorded.contains(&format!("{}/{}", w.namespace, w.name)))
            .filter(|w| !w.ips.iter().any(|ip| enrolled.contains(ip)))
            .map(|w| (w.namespace.clone(), w.name.clone(), w.ips.clone()))
            .collect()
    }

    fn discover(&mut self, view: &MeshView) {
        let wanted = self.unrecorded(view);
        let keys: BTreeSet<String> = wanted
            .iter()
            .map(|(ns, name, ips)| format!("{ns}/{name}@{ips:?}"))
            .collect();
        // Scanning enters every namespace of the node: only when a pod
        // appears that was not looked for before.
        if keys.is_subset(&self.scanned) {
            return;
        }
        self.scanned.extend(keys);
        for path in candidates(&self.settings.netns_dir, &self.settings.proc_root) {
            let Ok((cookie, Some(ip))) = netns::identify(&path) else {
                continue;
            };
            let Some((ns, name, ips)) = wanted.iter().find(|(_, _, ips)| ips.contains(&ip)) else {
                continue;
            };
            let pod = format!("{ns}/{name}");
            match self.enroller.enroll(&path, &[]) {
                Ok(_) => {
                    tracing::info!(%pod, netns = %path.display(), reason = "mesh pod found by scan (predates the CNI plugin)", "enrolled");
                    let record = PodRecord {
                        container_id: format!("scan-{cookie}"),
                        netns: path.clone(),
                        netns_cookie: cookie,
                        pod_namespace: ns.clone(),
                        pod_name: name.clone(),
                        pod_uid: String::new(),
                        ips: ips.iter().map(ToString::to_string).collect(),
                        enrolled: true,
                    };
                    if let Err(error) = self.records.save(&record) {
                        tracing::warn!(%pod, %error, "cannot write pod record");
                    }
                }
                Err(error) => tracing::warn!(%pod, %error, "found by scan but cannot enrol"),
            }
        }
    }
}

/// Distinct network namespaces other than the agent's own: named ones
/// first (their path outlives any one process), then processes'.
fn candidates(netns_dir: &Path, proc_root: &Path) -> Vec<PathBuf> {
    let own = std::fs::metadata("/proc/self/ns/net").map(|m| (m.dev(), m.ino()));
    let mut seen: HashSet<(u64, u64)> = own.into_iter().collect();
    let named = std::fs::read_dir(netns_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path());
    let procs = std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path().join("ns/net"));
    named
        .chain(procs)
        .take(SCAN_LIMIT)
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| seen.insert((m.dev(), m.ino()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_skip_our_own_namespace_and_duplicates() {
        // /proc holds our namespace many times (every thread of every
        // process in it); none of those is a candidate.
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let found = candidates(Path::new("/nonexistent"), Path::new("/proc"));
        let inodes: Vec<u64> = found
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().ino())
            .collect();
        assert!(!inodes.contains(&own));
        let unique: HashSet<u64> = inodes.iter().copied().collect();
        assert_eq!(unique.len(), inodes.len());
    }
}
