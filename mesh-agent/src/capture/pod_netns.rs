//! Finding the network namespace of an enrolled pod. Enrolment is a map
//! update by any process (the CNI plugin, `mesh-agent enroll`), keyed by
//! the namespace's cookie; the namespace's path is not recorded. The agent
//! finds it again by cookie among the named namespaces (`/run/netns`, where
//! CNI runtimes and `ip netns` keep them) and, failing that, the
//! namespaces of running processes (`/proc/<pid>/ns/net`).
//!
//! Each candidate is told apart by its nsfs inode (`stat`), so one
//! namespace costs one cookie lookup (a `setns` on the factory thread)
//! however many paths lead to it; the inode → cookie answers are cached.
use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use mesh_hbone::{SocketOrigin, SocketOriginFuture};

use super::netns_sockets::NetnsSockets;

/// An enrolled pod's namespace, held open while the pod is enrolled.
#[derive(Clone)]
pub struct PodNetns {
    pub cookie: u64,
    pub netns: Arc<File>,
}

/// The namespaces of this node's enrolled pods by pod address, kept by
/// the pod listeners' reconciler (crate::inbound::pods), read by the
/// outbound proxy to open tunnels from the source pod's namespace.
#[derive(Default)]
pub struct PodNetnsTable {
    pods: std::sync::RwLock<HashMap<std::net::IpAddr, PodNetns>>,
}

impl PodNetnsTable {
    pub fn get(&self, ip: std::net::IpAddr) -> Option<PodNetns> {
        self.read().get(&ip).cloned()
    }

    pub fn insert(&self, ip: std::net::IpAddr, pod: PodNetns) {
        self.write().insert(ip, pod);
    }

    /// Whether a pod of the table lives in the namespace `cookie`.
    pub fn contains_cookie(&self, cookie: u64) -> bool {
        self.read().values().any(|pod| pod.cookie == cookie)
    }

    /// Keeps only the pods `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(std::net::IpAddr, &PodNetns) -> bool) {
        self.write().retain(|ip, pod| keep(*ip, pod));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<std::net::IpAddr, PodNetns>> {
        self.pods.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<std::net::IpAddr, PodNetns>> {
        self.pods.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Tunnel sockets made in one pod's namespace: the peer sees the pod's
/// address as the tunnel's source, as with ztunnel.
pub struct PodOrigin {
    pub pod: PodNetns,
    pub sockets: NetnsSockets,
}

impl SocketOrigin for PodOrigin {
    fn key(&self) -> u64 {
        self.pod.cookie
    }

    fn socket(&self, gateway: std::net::SocketAddr) -> SocketOriginFuture {
        let sockets = self.sockets.clone();
        let netns = Arc::clone(&self.pod.netns);
        Box::pin(async move { Ok(sockets.stream(&netns, gateway).await?) })
    }
}

/// Directories of named network namespaces, searched first.
const NAMED: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// Finds namespaces by cookie, remembering what it learnt.
pub struct NetnsLocator {
    sockets: NetnsSockets,
    /// (device, inode) of an nsfs file → its namespace's cookie.
    cookies: HashMap<(u64, u64), u64>,
}

impl NetnsLocator {
    pub fn new(sockets: NetnsSockets) -> Self {
        Self {
            sockets,
            cookies: HashMap::new(),
        }
    }

    /// An open handle on the namespace of every cookie in `wanted` that can
    /// be found (the rest is left out).
    pub async fn find(&mut self, wanted: &HashSet<u64>) -> HashMap<u64, Arc<File>> {
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return found;
        }
        let mut named = Vec::new();
        for dir in NAMED {
            named.extend(entries(Path::new(dir)));
        }
        self.search(named, wanted, &mut found).await;
        if found.len() < wanted.len() {
            let processes: Vec<PathBuf> = entries(Path::new("/proc"))
                .into_iter()
                .filter(|p| is_pid(p))
                .map(|p| p.join("ns/net"))
                .collect();
            self.search(processes, wanted, &mut found).await;
        }
        // Forget namespaces that are gone, so the cache stays bounded.
        if self.cookies.len() > 4096 {
            self.cookies.clear();
        }
        found
    }

    async fn search(
        &mut self,
        paths: Vec<PathBuf>,
        wanted: &HashSet<u64>,
        found: &mut HashMap<u64, Arc<File>>,
    ) {
        for path in paths {
            if found.len() == wanted.len() {
                return;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let inode = (meta.dev(), meta.ino());
            if let Some(cookie) = self.cookies.get(&inode) {
                if !wanted.contains(cookie) || found.contains_key(cookie) {
                    continue;
                }
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let file = Arc::new(file);
            let cookie = match self.cookies.get(&inode) {
                Some(cookie) => *cookie,
                None => match self.sockets.cookie(&file).await {
                    Ok(cookie) => {
                        self.cookies.insert(inode, cookie);
                        cookie
                    }
                    Err(error) => {
                        tracing::debug!(path = %path.display(), %error, "not a usable network namespace");
                        continue;
                    }
                },
            };
            if wanted.contains(&cookie) {
                found.entry(cookie).or_insert(file);
            }
        }
    }
}

fn is_pid(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_the_own_namespace_through_proc() {
        let sockets = NetnsSockets::start().unwrap();
        let mut locator = NetnsLocator::new(sockets);
        let here = crate::capture::netns::current_cookie().unwrap();
        let found = locator.find(&HashSet::from([here, u64::MAX])).await;
        assert_eq!(
            found.len(),
            1,
            "the own namespace only, not a made-up cookie"
        );
        assert!(found.contains_key(&here));
    }
}
