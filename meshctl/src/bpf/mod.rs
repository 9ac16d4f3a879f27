//! `meshctl bpf`: the kernel side of one agent instance — the programs,
//! links and maps pinned under `<bpffs>/<instance>/{progs,links,maps}` —
//! with what each one does, read without the agent running.
//!
//! Everything comes from aya 0.14: `ProgramInfo::from_pin` (id, tag,
//! type), `PinnedLink` → `FdLink::info` (link id and the program it
//! attaches), `MapData::from_pin` + `MapData::info` (type, max entries) and
//! key iteration with the key/value types of `mesh-common` for the agent's
//! own maps. Arrays are always full (entries = max entries). Two things
//! aya 0.14 does not expose, so they come from elsewhere: the hook of a
//! cgroup link (the kernel's `bpf_link_info` union is private in aya) is
//! taken from the known pin names, and the entry count of a hash map
//! meshctl has no key type for is read from `bpftool -j map dump` when
//! bpftool is installed.
mod catalog;

use std::path::{Path, PathBuf};

use aya::{
    maps::{HashMap, Map, MapData, MapType},
    programs::{links::FdLink, links::PinnedLink, ProgramInfo},
};
use mesh_common::{names, ConnTuple, DenyKey, Enrollment, PortExclusion, ProbePort, SockAddr};
use serde::Serialize;

use crate::render::{self, Output, Table};

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "no agent instance {instance:?} under {bpffs}: {dir} does not exist \
         (is mesh-agent installed with --instance {instance} --bpffs {bpffs}?)"
    )]
    NoInstance {
        instance: String,
        bpffs: String,
        dir: String,
    },
    #[error("cannot list {dir}: {source}")]
    List { dir: String, source: std::io::Error },
}

/// One pinned program.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProgramRow {
    pub pin: String,
    /// The kernel's name (at most 15 characters).
    pub name: String,
    pub program_type: String,
    /// The hook, and the link holding it attached, or why not.
    pub attach: String,
    pub id: u32,
    pub tag: String,
    pub what: String,
}

/// One pinned map.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapRow {
    pub pin: String,
    pub name: String,
    pub map_type: String,
    pub id: u32,
    /// `None` when it could not be counted.
    pub entries: Option<u64>,
    pub max_entries: u32,
    pub what: String,
}

/// Everything `meshctl bpf` shows.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Report {
    pub instance: String,
    pub dir: String,
    pub programs: Vec<ProgramRow>,
    pub maps: Vec<MapRow>,
    /// Objects that could not be read, one line each.
    pub problems: Vec<String>,
}

fn pins(dir: &Path) -> Result<Vec<(String, PathBuf)>, BpfError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(BpfError::List {
                dir: dir.display().to_string(),
                source,
            })
        }
    };
    let mut pins: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect();
    pins.sort();
    Ok(pins)
}

fn snake(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` → `cgroup_sock_addr`.
fn program_type(info: &ProgramInfo) -> String {
    format!("{:?}", info.program_type())
        .trim_start_matches("BPF_PROG_TYPE_")
        .to_ascii_lowercase()
}

fn attach(links_dir: &Path, pin: &str, prog_id: u32) -> String {
    let hook = catalog::program(pin).map_or("?", |(hook, _)| hook);
    let path = links_dir.join(pin);
    if !path.exists() {
        return format!("{hook}: not attached (no link pin)");
    }
    match PinnedLink::from_pin(&path).map(FdLink::from) {
        Ok(link) => match link.info() {
            Ok(info) if info.program_id() == prog_id => format!("{hook} (link {})", info.id()),
            Ok(info) => format!(
                "{hook}: link {} runs program {}, not this one",
                info.id(),
                info.program_id()
            ),
            Err(e) => format!("{hook}: link unreadable: {e}"),
        },
        Err(e) => format!("{hook}: link unreadable: {e}"),
    }
}

fn count_keys<K: aya::Pod, V: aya::Pod>(map: Map) -> Option<u64> {
    let map: HashMap<MapData, K, V> = HashMap::try_from(map).ok()?;
    Some(map.keys().filter(Result::is_ok).count() as u64)
}

/// Entry count of a hash map: typed for the agent's maps, `bpftool` otherwise.
fn entries(pin: &str, path: &Path, data: MapData, map_type: Option<MapType>) -> Option<u64> {
    let hash = |d| match map_type {
        Some(MapType::LruHash) => Map::LruHashMap(d),
        _ => Map::HashMap(d),
    };
    let typed = match pin {
        names::MAP_ENROLLED => count_keys::<u64, Enrollment>(hash(data)),
        names::MAP_EXCLUDED => count_keys::<PortExclusion, u8>(hash(data)),
        names::MAP_ORIG_BY_TUPLE => count_keys::<ConnTuple, SockAddr>(hash(data)),
        names::MAP_AGENT_CONNS => count_keys::<ConnTuple, u8>(hash(data)),
        names::MAP_PROBE_PORTS => count_keys::<ProbePort, u8>(hash(data)),
        names::MAP_STRICT => count_keys::<[u8; 16], u8>(hash(data)),
        names::MAP_DENY => count_keys::<DenyKey, u8>(hash(data)),
        _ => None,
    };
    // Unknown maps, and agents built with other key/value layouts than
    // this meshctl (the typed handle refuses a size mismatch).
    typed.or_else(|| bpftool_count(path))
}

/// `bpftool -j map dump pinned <path>`: the number of elements, if bpftool
/// is there and answers.
fn bpftool_count(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(path)
        .output()
        .ok()?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    list.as_array().map(|a| a.len() as u64)
}

/// Reads every pin of `<bpffs>/<instance>`. Needs root (CAP_BPF).
pub fn collect(bpffs: &Path, instance: &str) -> Result<Report, BpfError> {
    let dir = bpffs.join(instance);
    if !dir.is_dir() {
        return Err(BpfError::NoInstance {
            instance: instance.into(),
            bpffs: bpffs.display().to_string(),
            dir: dir.display().to_string(),
        });
    }
    let mut report = Report {
        instance: instance.into(),
        dir: dir.display().to_string(),
        ..Default::default()
    };
    for (pin, path) in pins(&dir.join("progs"))? {
        match ProgramInfo::from_pin(&path) {
            Ok(info) => report.programs.push(ProgramRow {
                name: info.name_as_str().unwrap_or("").to_string(),
                program_type: program_type(&info),
                attach: attach(&dir.join("links"), &pin, info.id()),
                id: info.id(),
                tag: format!("{:016x}", info.tag()),
                what: catalog::program(&pin)
                    .map_or("not a pin this meshctl knows", |(_, what)| what)
                    .to_string(),
                pin,
            }),
            Err(e) => report.problems.push(format!("progs/{pin}: {e}")),
        }
    }
    for (pin, path) in pins(&dir.join("maps"))? {
        let data = match MapData::from_pin(&path) {
            Ok(data) => data,
            Err(e) => {
                report.problems.push(format!("maps/{pin}: {e}"));
                continue;
            }
        };
        let info = match data.info() {
            Ok(info) => info,
            Err(e) => {
                report.problems.push(format!("maps/{pin}: {e}"));
                continue;
            }
        };
        let map_type = info.map_type().ok();
        let is_array = matches!(map_type, Some(MapType::Array | MapType::PerCpuArray));
        let (name, id, max) = (
            info.name_as_str().unwrap_or("").to_string(),
            info.id(),
            info.max_entries(),
        );
        let entries = if is_array {
            Some(u64::from(max))
        } else {
            entries(&pin, &path, data, map_type)
        };
        report.maps.push(MapRow {
            name,
            map_type: map_type.map_or("unknown".into(), |t| snake(&format!("{t:?}"))),
            id,
            entries,
            max_entries: max,
            what: catalog::map(&pin)
                .unwrap_or("not a pin this meshctl knows")
                .to_string(),
            pin,
        });
    }
    Ok(report)
}

/// `  <pin>: <what>`, wrapped under the text.
fn explain(pin: &str, what: &str) -> String {
    let first = format!("  {pin}: ");
    let rest = " ".repeat(first.chars().count());
    render::wrap(what, render::WIDTH, &first, &rest)
}

/// The two tables (each object's explanation on its own indented line, so
/// the tables stay within 100 columns), or the report as JSON/YAML.
pub fn render(report: &Report, output: Output) -> String {
    if let Some(text) = render::data(&serde_json::to_value(report).unwrap_or_default(), output) {
        return text;
    }
    let mut out = format!("Agent instance {:?} ({})\n\n", report.instance, report.dir);
    if report.programs.is_empty() {
        out.push_str("No programs pinned.\n");
    } else {
        let mut t = Table::new(["PROGRAM", "TYPE", "ATTACHED", "ID", "TAG"]);
        for p in &report.programs {
            t.row([
                p.pin.clone(),
                p.program_type.clone(),
                p.attach.clone(),
                p.id.to_string(),
                p.tag.clone(),
            ]);
        }
        out.push_str(&t.render(render::WIDTH));
        out.push('\n');
        for p in &report.programs {
            out.push_str(&explain(&p.pin, &p.what));
        }
    }
    out.push('\n');
    if report.maps.is_empty() {
        out.push_str("No maps pinned.\n");
    } else {
        let mut t = Table::new(["MAP", "TYPE", "ID", "ENTRIES", "MAX"]);
        for m in &report.maps {
            t.row([
                m.pin.clone(),
                m.map_type.clone(),
                m.id.to_string(),
                m.entries.map_or("?".into(), |n| n.to_string()),
                m.max_entries.to_string(),
            ]);
        }
        out.push_str(&t.render(render::WIDTH));
        out.push('\n');
        for m in &report.maps {
            out.push_str(&explain(&m.pin, &m.what));
        }
    }
    for problem in &report.problems {
        out.push_str(&format!("warning: {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests;
