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

/// True when a bpf filesystem is mounted exactly at `path`.
pub fn bpffs_mounted(path: &Path) -> anyhow::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().any(|line| {
        let Some((left, right)) = line.split_once(" - ") else {
            return false;
        };
        right.split_whitespace().next() == Some("bpf")
            && left.split_whitespace().nth(4).map(Path::new) == Some(path)
    }))
}

/// Mounts a bpf filesystem at `path` if none is mounted there.
pub fn ensure_bpffs(path: &Path) -> anyhow::Result<()> {
    if bpffs_mounted(path)? {
        return Ok(());
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting bpffs at {} (needs root)", path.display()))
}
