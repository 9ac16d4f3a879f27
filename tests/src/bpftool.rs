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

/// Writes one entry into the map pinned at `pin`
/// (`bpftool map update pinned <pin> key hex … value hex …`): how a test
/// sets kernel state the agent would otherwise compute.
pub fn map_update(pin: &Path, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let path = pin
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 pin path"))?;
    let hex = |bytes: &[u8]| -> Vec<String> { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let (key, value) = (hex(key), hex(value));
    let mut args = vec!["map", "update", "pinned", path, "key", "hex"];
    args.extend(key.iter().map(String::as_str));
    args.extend(["value", "hex"]);
    args.extend(value.iter().map(String::as_str));
    crate::cmd::run("bpftool", &args).map(drop)
}
