//! The harness prepares the host itself: on a machine where bpffs is not
//! mounted (a fresh one), a topology still comes up and an agent without
//! `CAP_SYS_ADMIN` finds its pins' filesystem. Proven in a private mount
//! namespace (so the host's own mount, which other tests use at the same
//! time, is untouched): the test re-runs itself there, unmounts bpffs,
//! and prepares the host again. Needs root.
use std::{path::Path, process::Command};

use mesh_e2e::host_setup::{bpffs_mounted, prepare, BPFFS};

/// Set in the child that runs inside the private mount namespace.
const CHILD: &str = "MESH_HOST_SETUP_CHILD";

#[test]
fn a_host_without_bpffs_is_prepared() {
    mesh_e2e::require_root();
    if std::env::var_os(CHILD).is_some() {
        return in_private_mount_namespace();
    }
    let me = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(&me)
        .args(["--exact", "a_host_without_bpffs_is_prepared", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .expect("unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
    assert!(text.contains("bpffs was gone, prepared again"), "{text}");
}

/// The child: no bpffs at all, then [`prepare`].
fn in_private_mount_namespace() {
    let path = Path::new(BPFFS);
    // Every stacked bpffs mount at the path (a host may have several).
    while bpffs_mounted(path).unwrap() {
        nix::mount::umount(path).expect("unmounting bpffs in the private namespace");
    }
    assert!(!bpffs_mounted(path).unwrap());
    let cgroup = prepare().expect("preparing a host without bpffs");
    assert!(
        bpffs_mounted(path).unwrap(),
        "prepare() did not mount bpffs"
    );
    assert!(
        cgroup.join("cgroup.controllers").exists(),
        "{}",
        cgroup.display()
    );
    // A second run changes nothing (idempotent, no stacked mounts).
    prepare().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let stacked = info
        .lines()
        .filter(|l| l.contains(" - bpf ") && l.split_whitespace().nth(4) == Some(BPFFS))
        .count();
    assert_eq!(stacked, 1, "{info}");
    println!("bpffs was gone, prepared again");
}
