//! Finding (and if needed mounting) the BPF filesystem, and finding the
//! cgroup v2 mount on hybrid or unified hosts.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
    #[error(
        "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo); pass --cgroup-root"
    )]
    NoCgroup2,
    #[error("cannot mount bpffs at {path}")]
    MountBpffs { path: PathBuf, source: nix::Error },
    #[error("cannot create {path}")]
    Mkdir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Mount points of a filesystem type, from mountinfo text.
fn mounts_of_type(mountinfo: &str, fstype: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <src> <opts>"
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == fstype)
                .then(|| PathBuf::from(unescape_octal(mount_point)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// The first cgroup2 mount point (`/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> Result<PathBuf, MountError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?;
    mounts_of_type(&info, "cgroup2")
        .into_iter()
        .next()
        .ok_or(MountError::NoCgroup2)
}

/// Makes sure `path` is a bpffs mount, mounting one if it is not.
pub fn ensure_bpffs(path: &Path) -> Result<(), MountError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?;
    if mounts_of_type(&info, "bpf").iter().any(|m| m == path) {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|source| MountError::Mkdir {
        path: path.into(),
        source,
    })?;
    tracing::info!(path = %path.display(), "mounting bpffs");
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| MountError::MountBpffs {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
34 25 0:29 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 34 0:31 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd
40 25 0:35 / /sys/fs/bpf rw shared:15 - bpf bpf rw,mode=700
41 25 0:36 / /mnt/with\\040space rw - bpf bpf rw";

    #[test]
    fn finds_cgroup2_on_hybrid_layout() {
        assert_eq!(
            mounts_of_type(HYBRID, "cgroup2"),
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        );
    }

    #[test]
    fn finds_bpffs_and_unescapes_spaces() {
        assert_eq!(
            mounts_of_type(HYBRID, "bpf"),
            vec![
                PathBuf::from("/sys/fs/bpf"),
                PathBuf::from("/mnt/with space")
            ]
        );
    }
}
