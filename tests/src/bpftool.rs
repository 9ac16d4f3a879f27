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

/// Names of every loaded program (`bpftool -j prog show`), as the kernel
/// keeps them (at most 15 characters).
pub fn program_names() -> anyhow::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Prog {
        #[serde(default)]
        name: String,
    }
    let out = crate::cmd::run("bpftool", &["-j", "prog", "show"])?;
    let progs: Vec<Prog> = serde_json::from_str(&out)?;
    Ok(progs.into_iter().map(|p| p.name).collect())
}

/// Raw value bytes of `key` in the map pinned at `pin`
/// (`bpftool -j map lookup pinned <pin> key hex …`).
pub fn map_lookup(pin: &Path, key: &[u8]) -> anyhow::Result<Vec<u8>> {
    let path = pin
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 pin path"))?;
    let key: Vec<String> = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut args = vec!["-j", "map", "lookup", "pinned", path, "key", "hex"];
    args.extend(key.iter().map(String::as_str));
    let out = crate::cmd::run("bpftool", &args)?;
    let entry: serde_json::Value = serde_json::from_str(&out)?;
    hex_bytes(&entry["value"]).ok_or_else(|| anyhow::anyhow!("no raw value in {entry}"))
}

/// The counter at `index` of the per-CPU array pinned at `pin`, summed
/// over CPUs (`bpftool -j map lookup`; values are 64-bit).
pub fn percpu_sum(pin: &Path, index: u32) -> anyhow::Result<u64> {
    let path = pin
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 pin path"))?;
    let key: Vec<String> = index
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut args = vec!["-j", "map", "lookup", "pinned", path, "key", "hex"];
    args.extend(key.iter().map(String::as_str));
    let out = crate::cmd::run("bpftool", &args)?;
    let entry: serde_json::Value = serde_json::from_str(&out)?;
    let values = entry["values"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no per-CPU values in {entry}"))?;
    values
        .iter()
        .map(|v| {
            let bytes =
                hex_bytes(&v["value"]).ok_or_else(|| anyhow::anyhow!("no raw value in {v}"))?;
            let bytes: [u8; 8] = bytes
                .try_into()
                .map_err(|b| anyhow::anyhow!("not a u64: {b:?}"))?;
            Ok(u64::from_le_bytes(bytes))
        })
        .sum()
}

/// `["0x0a", "0x00", …]` (bpftool's raw bytes) as bytes.
fn hex_bytes(value: &serde_json::Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
        .collect()
}
