//! Loading, attaching and pinning the capture programs — and, on restart,
//! reusing what is already pinned instead of attaching a second time.
//!
//! Rules:
//! - maps are pinned by name and reused across restarts, so enrolment
//!   survives the agent; a pin whose layout no longer matches is replaced;
//! - a program is attached once per instance: if its link is pinned and the
//!   pinned program has the same tag (SHA of its instructions) as the one we
//!   carry and uses the same pinned maps, the attachment is kept as is (the
//!   tag leaves map references out: a program whose map pin was replaced
//!   keeps its tag but would go on using the old, unpinned map);
//! - if the program changed (upgrade), the new one is attached first and
//!   the old link released after, so capture has no gap (the two run side by
//!   side for an instant; the second sees an already-redirected destination,
//!   the agent's own port, and leaves it).
use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, MapInfo},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSkbAttachType, ProgramInfo,
    },
    Ebpf, EbpfLoader,
};
use mesh_common::{
    names, stat, AgentIdentity, CaptureConfig, ConnTuple, Enrollment, PortExclusion, ProbePort,
    SockAddr,
};
use serde::{Deserialize, Serialize};

use super::{bpffs, identity, pins::PinLayout, EBPF_OBJECT};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Mount(#[from] bpffs::MountError),
    #[error("cannot create pin directories under {dir}")]
    PinDirs {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object")]
    Object(#[from] aya::EbpfError),
    #[error("program {program}")]
    Program {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("program {program} is missing from the eBPF object")]
    MissingProgram { program: &'static str },
    #[error("map {map}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("cannot open cgroup {path}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pinning {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("finding the agent's own network namespace and cgroup")]
    Identity(#[from] identity::IdentityError),
}

/// What happened to one program at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachAction {
    /// Nothing was pinned: attached and pinned now.
    Attached,
    /// The pinned attachment runs the same code: kept.
    Reused,
    /// The pinned attachment ran older code: replaced without a gap.
    Replaced,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramState {
    pub name: String,
    pub action: AttachAction,
    /// Kernel id of the program now attached.
    pub prog_id: u32,
}

/// Expected (key size, value size, max entries) of each pinned map.
fn expected_layout(name: &str) -> Option<(u32, u32, u32)> {
    use std::mem::size_of;
    let s = |n: usize| n as u32;
    Some(match name {
        names::MAP_ENROLLED => (
            s(size_of::<u64>()),
            s(size_of::<Enrollment>()),
            mesh_common::ENROLLED_ENTRIES,
        ),
        names::MAP_EXCLUDED => (
            s(size_of::<PortExclusion>()),
            1,
            mesh_common::EXCLUDED_PORT_ENTRIES,
        ),
        // Socket storage: int key, no capacity of its own.
        names::MAP_ORIG_BY_SOCKET => (4, s(size_of::<SockAddr>()), 0),
        names::MAP_ORIG_BY_TUPLE => (
            s(size_of::<ConnTuple>()),
            s(size_of::<SockAddr>()),
            mesh_common::ORIG_DST_ENTRIES,
        ),
        names::MAP_CONFIG => (4, s(size_of::<CaptureConfig>()), 1),
        names::MAP_STATS => (4, 8, stat::COUNT),
        names::MAP_STRICT => (16, 1, mesh_common::ENROLLED_ENTRIES),
        names::MAP_DENY => (
            s(size_of::<mesh_common::DenyKey>()),
            1,
            mesh_common::DENY_CONNECT_ENTRIES,
        ),
        names::MAP_AGENT_IDENTITY => (4, s(size_of::<AgentIdentity>()), 1),
        names::MAP_AGENT_CONNS => (
            s(size_of::<ConnTuple>()),
            1,
            mesh_common::AGENT_CONN_ENTRIES,
        ),
        names::MAP_PROBE_PORTS => (
            s(size_of::<ProbePort>()),
            1,
            mesh_common::PROBE_PORT_ENTRIES,
        ),
        names::MAP_DNS_ORIG_SERVER => (4, s(size_of::<SockAddr>()), 0),
        names::MAP_FAST_PATH => (
            s(size_of::<mesh_common::FastPathKey>()),
            1,
            mesh_common::FAST_PATH_ENTRIES,
        ),
        names::MAP_FAST_PATH_SOCKET => (4, 1, 0),
        // A ring buffer has no key or value; its size is its capacity.
        names::MAP_KERNEL_CONN_EVENTS => (0, 0, mesh_common::KERNEL_CONN_EVENTS_BYTES),
        _ => return None,
    })
}

/// Removes map pins whose layout differs from what this build expects, and
/// pins of maps this build no longer has.
fn drop_incompatible_map_pins(layout: &PinLayout) {
    for name in super::pins::OBSOLETE_MAPS {
        let path = layout.map(name);
        if path.exists() {
            tracing::info!(
                map = name,
                "removing the pin of a map this version no longer uses"
            );
            let _ = std::fs::remove_file(&path);
        }
    }
    for name in super::pins::MAPS {
        let path = layout.map(name);
        let Ok(info) = MapInfo::from_pin(&path) else {
            continue;
        };
        let found = (info.key_size(), info.value_size(), info.max_entries());
        if Some(found) != expected_layout(name) {
            tracing::warn!(
                map = name,
                ?found,
                expected = ?expected_layout(name),
                "pinned map has an old layout; replacing it (its entries are lost)"
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `config` with DNS capture set: enrolled pods' UDP DNS goes to the
/// agent's address on `dns_port`; `None` (no DNS proxy) writes 0, which the
/// programs read as "leave DNS alone".
pub fn with_dns_port(config: CaptureConfig, dns_port: Option<u16>) -> CaptureConfig {
    CaptureConfig {
        dns_port: dns_port.unwrap_or(0),
        ..config
    }
}

/// Loads, attaches (or reuses) and pins everything, and writes `config`
/// with DNS capture to `dns_port` (`None`: off, see [`with_dns_port`]).
pub fn install(
    layout: &PinLayout,
    bpffs_root: &Path,
    cgroup_root: &Path,
    config: CaptureConfig,
    dns_port: Option<u16>,
) -> Result<Vec<ProgramState>, LoadError> {
    let config = with_dns_port(config, dns_port);
    bpffs::ensure_bpffs(bpffs_root)?;
    layout.create_dirs().map_err(|source| LoadError::PinDirs {
        dir: layout.root.clone(),
        source,
    })?;
    drop_incompatible_map_pins(layout);

    let map_paths: Vec<(&'static str, PathBuf)> = super::pins::MAPS
        .iter()
        .map(|&n| (n, layout.map(n)))
        .collect();
    let mut loader = EbpfLoader::new();
    // No CO-RE relocations in our programs: skip parsing the kernel's BTF,
    // which would cost ~10 MB of peak memory for nothing.
    loader.btf(None);
    for (name, path) in &map_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(EBPF_OBJECT)?;

    // Configuration goes in before anything is attached.
    let map = ebpf.map_mut(names::MAP_CONFIG).ok_or(LoadError::Map {
        map: names::MAP_CONFIG,
        source: aya::maps::MapError::InvalidName {
            name: names::MAP_CONFIG.into(),
        },
    })?;
    let mut array: Array<_, CaptureConfig> =
        Array::try_from(map).map_err(|source| LoadError::Map {
            map: names::MAP_CONFIG,
            source,
        })?;
    array.set(0, config, 0).map_err(|source| LoadError::Map {
        map: names::MAP_CONFIG,
        source,
    })?;
    write_identity(&mut ebpf, identity::current()?)?;

    let cgroup = File::open(cgroup_root).map_err(|source| LoadError::Cgroup {
        path: cgroup_root.into(),
        source,
    })?;

    let mut programs = Vec::new();
    for name in super::pins::PROGRAMS {
        programs.push(attach_one(&mut ebpf, layout, name, &cgroup)?);
    }
    Ok(programs)
}

/// Records which sockets are the agent's (see `identity.rs`).
fn write_identity(ebpf: &mut Ebpf, id: AgentIdentity) -> Result<(), LoadError> {
    let name = names::MAP_AGENT_IDENTITY;
    let err = |source| LoadError::Map { map: name, source };
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| err(aya::maps::MapError::InvalidName { name: name.into() }))?;
    let mut array: Array<_, AgentIdentity> = Array::try_from(map).map_err(err)?;
    array.set(0, id, 0).map_err(err)?;
    tracing::info!(
        netns_cookie = id.netns_cookie,
        cgroup_id = id.cgroup_id,
        "agent identity recorded for the kernel"
    );
    Ok(())
}

fn attach_one(
    ebpf: &mut Ebpf,
    layout: &PinLayout,
    name: &'static str,
    cgroup: &File,
) -> Result<ProgramState, LoadError> {
    let perr = |source| LoadError::Program {
        program: name,
        source,
    };
    let program = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram { program: name })?;
    let (link_path, prog_path) = (layout.link(name), layout.prog(name));

    // Load (verify) ours, to compare with what is pinned.
    let attach = |program: &mut aya::programs::Program| -> Result<FdLink, LoadError> {
        let fd_link = |link: Result<FdLink, aya::programs::links::LinkError>| {
            link.map_err(|e| LoadError::Pin {
                path: link_path.clone(),
                reason: e.to_string(),
            })
        };
        use aya::programs::Program;
        match program {
            Program::CgroupSockAddr(p) => {
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(perr)?;
                fd_link(FdLink::try_from(p.take_link(id).map_err(perr)?))
            }
            Program::SockOps(p) => {
                let id = p.attach(cgroup, CgroupAttachMode::Single).map_err(perr)?;
                fd_link(FdLink::try_from(p.take_link(id).map_err(perr)?))
            }
            Program::CgroupSkb(p) => {
                let ingress = CgroupSkbAttachType::Ingress;
                let id = p
                    .attach(cgroup, ingress, CgroupAttachMode::Single)
                    .map_err(perr)?;
                fd_link(FdLink::try_from(p.take_link(id).map_err(perr)?))
            }
            _ => Err(LoadError::MissingProgram { program: name }),
        }
    };
    match program {
        aya::programs::Program::CgroupSockAddr(p) => p.load().map_err(perr)?,
        aya::programs::Program::SockOps(p) => p.load().map_err(perr)?,
        aya::programs::Program::CgroupSkb(p) => p.load().map_err(perr)?,
        _ => return Err(LoadError::MissingProgram { program: name }),
    }
    let ours = program.info().map_err(perr)?;

    let pinned_link = PinnedLink::from_pin(&link_path).ok();
    let pinned_prog = ProgramInfo::from_pin(&prog_path).ok();
    if let (Some(_), Some(pinned)) = (&pinned_link, &pinned_prog) {
        if pinned.tag() == ours.tag() && same_maps(pinned, &ours) {
            tracing::info!(
                program = name,
                prog_id = pinned.id(),
                "reusing pinned attachment"
            );
            return Ok(ProgramState {
                name: name.into(),
                action: AttachAction::Reused,
                prog_id: pinned.id(),
            });
        }
    }

    // Cgroup bpf_links must be created with flags 0 ("Single" in aya);
    // links are always multi-attach, so other tools' programs are unaffected.
    let link = attach(program)?;
    // Keep the old link's fd open until the new one is pinned: no gap.
    let old = pinned_link;
    if old.is_some() {
        let _ = std::fs::remove_file(&link_path);
    }
    link.pin(&link_path).map_err(|e| LoadError::Pin {
        path: link_path.clone(),
        reason: e.to_string(),
    })?;
    let _ = std::fs::remove_file(&prog_path);
    program.pin(&prog_path).map_err(|e| LoadError::Pin {
        path: prog_path.clone(),
        reason: e.to_string(),
    })?;
    let action = if old.is_some() {
        AttachAction::Replaced
    } else {
        AttachAction::Attached
    };
    drop(old);
    tracing::info!(
        program = name,
        prog_id = ours.id(),
        ?action,
        "program attached and pinned"
    );
    Ok(ProgramState {
        name: name.into(),
        action,
        prog_id: ours.id(),
    })
}

/// True when both programs use the same pinned maps (by kernel id). Maps
/// every load creates afresh (aya-log's buffer, `.rodata`) are left out.
/// A program whose maps cannot be read counts as different: replaced,
/// never kept pointing at a map that is no longer pinned.
fn same_maps(pinned: &ProgramInfo, ours: &ProgramInfo) -> bool {
    match (pinned_map_ids(pinned), pinned_map_ids(ours)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Ids of the maps `program` uses that carry the name of a pinned map, sorted.
fn pinned_map_ids(program: &ProgramInfo) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    for id in program.map_ids().ok()?? {
        let info = MapInfo::from_id(id).ok()?;
        if super::pins::MAPS.contains(&info.name_as_str()?) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Some(ids)
}

/// Reads the aya-log records of the attached programs (they share one ring
/// buffer per load; the first program's is the one of the current load).
pub fn logger(programs: &[ProgramState]) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
    let id = programs.first()?.prog_id;
    match aya_log::EbpfLogger::init_from_id(id) {
        Ok(logger) => Some(logger),
        Err(error) => {
            tracing::warn!(%error, "eBPF logs unavailable");
            None
        }
    }
}
