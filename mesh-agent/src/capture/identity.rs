//! The agent's identity as the kernel checks it (`agent_identity` map):
//! its network namespace cookie and its cgroup v2 id. The capture programs
//! honour the agent's `SO_MARK`, and let its connections reach STRICT pods
//! from the node address, only for sockets matching both — a pod can set
//! the mark with `NET_ADMIN`, but cannot enter the node's namespace or the
//! agent's cgroup. Written by whoever installs (`mesh-agent install`, which
//! `run` spawns at every start, so it is always the running daemon's).
use std::path::{Path, PathBuf};

use mesh_common::AgentIdentity;

use super::{bpffs, netns};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read this process's network namespace cookie")]
    Netns(#[source] std::io::Error),
    #[error("cannot find this process's cgroup v2 in /proc/self/cgroup")]
    NoCgroup,
    #[error("cannot read /proc/self/cgroup")]
    ReadCgroup(#[source] std::io::Error),
    #[error(transparent)]
    Mount(#[from] bpffs::MountError),
    #[error("cannot stat cgroup {path}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The cgroup v2 path of this process, relative to the hierarchy root
/// (the `0::` line of `/proc/self/cgroup`).
fn own_cgroup(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_start_matches('/'))
}

/// A cgroup v2 directory's id: its inode number.
fn cgroup_id(dir: &Path) -> Result<u64, IdentityError> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir)
        .map(|m| m.ino())
        .map_err(|source| IdentityError::Stat {
            path: dir.into(),
            source,
        })
}

/// This process's identity.
pub fn current() -> Result<AgentIdentity, IdentityError> {
    let netns_cookie = netns::current_cookie().map_err(IdentityError::Netns)?;
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(IdentityError::ReadCgroup)?;
    let relative = own_cgroup(&text).ok_or(IdentityError::NoCgroup)?;
    let dir = bpffs::cgroup2_mount()?.join(relative);
    Ok(AgentIdentity {
        netns_cookie,
        cgroup_id: cgroup_id(&dir)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_line_names_the_cgroup() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/x\n0::/kubepods/pod1/agent\n";
        assert_eq!(own_cgroup(hybrid), Some("kubepods/pod1/agent"));
        assert_eq!(own_cgroup("0::/\n"), Some(""));
        assert_eq!(own_cgroup("1:cpu:/a\n"), None);
    }
}
