//! cgroup v2 directories for pods, removed on drop (processes killed first).
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mesh_testkit::try_eventually;

/// The cgroup v2 mount (hybrid hosts: `/sys/fs/cgroup/unified`).
pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    crate::host_setup::mounts_of_type("cgroup2")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no cgroup2 mount in /proc/self/mountinfo"))
}

#[derive(Debug)]
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn create(path: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir(&path)
            .map_err(|e| anyhow::anyhow!("cannot create cgroup {}: {e}", path.display()))?;
        Ok(Self { path })
    }
}

/// Kills everything in `path` and below, then removes the directories.
pub fn remove_tree(path: &Path) {
    if !path.exists() {
        return;
    }
    let children: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for child in children {
        remove_tree(&child);
    }
    // cgroup.kill (5.14+) SIGKILLs every process in the subtree.
    let _ = std::fs::write(path.join("cgroup.kill"), "1");
    let what = format!("cgroup {} removed", path.display());
    if let Err(e) = try_eventually(&what, Duration::from_secs(5), || std::fs::remove_dir(path)) {
        eprintln!("cleanup: {e}");
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}
