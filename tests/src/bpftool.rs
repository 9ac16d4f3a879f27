//! What the kernel says is attached, through bpftool (independent of aya).
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CgroupProg {
    pub id: u32,
    pub attach_type: String,
    pub name: String,
}

/// Programs attached directly at `cgroup` (`bpftool -j cgroup show`).
pub fn cgroup_programs(cgroup: &Path) -> anyhow::Result<Vec<CgroupProg>> {
    let path = cgroup
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 cgroup path"))?;
    let out = crate::cmd::run("bpftool", &["-j", "cgroup", "show", path])?;
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    Ok(serde_json::from_str(&out)?)
}
