//! What every topology needs from the host before anything starts, set up
//! here whatever ran before and in whatever order: bpffs mounted at
//! `/sys/fs/bpf` and cgroup v2 found. The agent mounts bpffs itself when
//! it holds `CAP_SYS_ADMIN`; a test that runs it with fewer capabilities
//! (a DaemonSet's mount comes from the kubelet) needs the mount to be
//! there already, so the harness prepares it with full privileges first.
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Where the agent and the tests pin programs and maps.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Mounts bpffs at [`BPFFS`] unless one is there, and returns the cgroup
/// v2 root the topologies' cgroups go under.
pub fn prepare() -> anyhow::Result<PathBuf> {
    ensure_bpffs(Path::new(BPFFS))?;
    crate::cgroup::cgroup2_mount()
}

/// The mount points of every filesystem of type `fstype`, in mount order.
pub fn mounts_of_type(fstype: &str) -> anyhow::Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == fstype)
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .collect())
}

/// True when a bpf filesystem is mounted exactly at `path`.
pub fn bpffs_mounted(path: &Path) -> anyhow::Result<bool> {
    Ok(mounts_of_type("bpf")?.iter().any(|m| m == path))
}

/// Mounts a bpf filesystem at `path` if none is mounted there.
pub fn ensure_bpffs(path: &Path) -> anyhow::Result<()> {
    if bpffs_mounted(path)? {
        return Ok(());
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let target = path
        .to_str()
        .with_context(|| format!("non-UTF-8 path {path:?}"))?;
    crate::cmd::run("mount", &["-t", "bpf", "bpf", target])
        .with_context(|| format!("mounting bpffs at {} (needs root)", path.display()))?;
    Ok(())
}
