//! Unique resource names, and removal of what a killed run left behind.
//!
//! Names are `<tag><pid>x<n>`: a namespace, cgroup or pin directory whose
//! creating process is gone belongs to nobody and is removed.
use std::{
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh name prefix for one topology of this process.
pub fn unique_prefix(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The creating pid encoded in `name`, if it has the form `<tag><pid>x…`.
fn owner_pid(tag: &str, name: &str) -> Option<u32> {
    name.strip_prefix(tag)?.split('x').next()?.parse().ok()
}

fn orphaned(tag: &str, name: &str) -> bool {
    owner_pid(tag, name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes network namespaces, cgroups, bpffs pins and temporary files
/// (logs kept by failed tests) named with `tag`
/// whose creating process no longer exists. Returns how many it removed.
pub fn sweep(tag: &str) -> usize {
    let mut removed = 0;
    if let Ok(out) = crate::cmd::ip(&["netns", "list"]) {
        for name in out.lines().filter_map(|l| l.split_whitespace().next()) {
            if orphaned(tag, name.split('-').next().unwrap_or(name))
                && crate::cmd::ip(&["netns", "del", name]).is_ok()
            {
                removed += 1;
            }
        }
    }
    if let Ok(cg) = crate::cgroup::cgroup2_mount() {
        for entry in std::fs::read_dir(&cg).into_iter().flatten().flatten() {
            if orphaned(tag, &entry.file_name().to_string_lossy()) {
                crate::cgroup::remove_tree(&entry.path());
                removed += 1;
            }
        }
    }
    // Name-resolution files of pod namespaces (`ip netns exec`).
    for entry in std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if orphaned(tag, name.split('-').next().unwrap_or(&name))
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    // Logs and cluster directories kept by failed runs.
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if orphaned(tag, name.split('-').next().unwrap_or(&name)) {
            let path = entry.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if gone.is_ok() {
                removed += 1;
            }
        }
    }
    for entry in std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
    {
        if orphaned(tag, &entry.file_name().to_string_lossy())
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_carry_the_pid() {
        let a = unique_prefix("mte");
        let b = unique_prefix("mte");
        assert_ne!(a, b);
        assert_eq!(owner_pid("mte", &a), Some(std::process::id()));
        assert!(!orphaned("mte", &a), "our own resources are not orphans");
        assert_eq!(owner_pid("mte", "other1x2"), None);
    }
}
