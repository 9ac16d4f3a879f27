//! Typed handles on the pinned maps, for everything that runs after load:
//! the daemon, and the `enroll`/`status` subcommands (which need no daemon).
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf};
use mesh_common::{
    names, stat, CaptureConfig, ConnTuple, DenyKey, Enrollment, FastPathKey, PortExclusion,
    ProbePort, SockAddr,
};

use super::pins::PinLayout;

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error(
        "capture maps are not pinned at {dir}; is `mesh-agent run` started with the \
         same --instance and --bpffs?"
    )]
    NotPinned {
        dir: String,
        source: aya::maps::MapError,
    },
    #[error("map {map}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

fn open(layout: &PinLayout, name: &'static str) -> Result<MapData, MapsError> {
    MapData::from_pin(layout.map(name)).map_err(|source| MapsError::NotPinned {
        dir: layout.root.display().to_string(),
        source,
    })
}

fn typed<T>(name: &'static str, map: Map) -> Result<T, MapsError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).map_err(|source| MapsError::Map { map: name, source })
}

pub type EnrolledMap = HashMap<MapData, u64, Enrollment>;
pub type ExcludedMap = HashMap<MapData, PortExclusion, u8>;
pub type OrigDstMap = HashMap<MapData, ConnTuple, SockAddr>;
pub type ConfigMap = Array<MapData, CaptureConfig>;
pub type StatsMap = PerCpuArray<MapData, u64>;
pub type DenyMap = HashMap<MapData, DenyKey, u8>;
pub type FastPathMap = HashMap<MapData, FastPathKey, u8>;
#[allow(dead_code)] // used by probes.rs, not yet by the daemon
pub type ProbePortsMap = HashMap<MapData, ProbePort, u8>;

pub fn enrolled(layout: &PinLayout) -> Result<EnrolledMap, MapsError> {
    typed(
        names::MAP_ENROLLED,
        Map::HashMap(open(layout, names::MAP_ENROLLED)?),
    )
}
pub fn excluded(layout: &PinLayout) -> Result<ExcludedMap, MapsError> {
    typed(
        names::MAP_EXCLUDED,
        Map::HashMap(open(layout, names::MAP_EXCLUDED)?),
    )
}
pub fn orig_dst_by_tuple(layout: &PinLayout) -> Result<OrigDstMap, MapsError> {
    typed(
        names::MAP_ORIG_BY_TUPLE,
        Map::LruHashMap(open(layout, names::MAP_ORIG_BY_TUPLE)?),
    )
}
pub fn strict(layout: &PinLayout) -> Result<HashMap<MapData, [u8; 16], u8>, MapsError> {
    typed(
        names::MAP_STRICT,
        Map::HashMap(open(layout, names::MAP_STRICT)?),
    )
}
pub fn deny(layout: &PinLayout) -> Result<DenyMap, MapsError> {
    typed(
        names::MAP_DENY,
        Map::HashMap(open(layout, names::MAP_DENY)?),
    )
}
#[allow(dead_code)] // used by probes.rs, not yet by the daemon
pub fn probe_ports(layout: &PinLayout) -> Result<ProbePortsMap, MapsError> {
    typed(
        names::MAP_PROBE_PORTS,
        Map::HashMap(open(layout, names::MAP_PROBE_PORTS)?),
    )
}
pub fn fast_path(layout: &PinLayout) -> Result<FastPathMap, MapsError> {
    typed(
        names::MAP_FAST_PATH,
        Map::LruHashMap(open(layout, names::MAP_FAST_PATH)?),
    )
}
pub fn kernel_conn_events(layout: &PinLayout) -> Result<RingBuf<MapData>, MapsError> {
    typed(
        names::MAP_KERNEL_CONN_EVENTS,
        Map::RingBuf(open(layout, names::MAP_KERNEL_CONN_EVENTS)?),
    )
}
pub fn config(layout: &PinLayout) -> Result<ConfigMap, MapsError> {
    typed(
        names::MAP_CONFIG,
        Map::Array(open(layout, names::MAP_CONFIG)?),
    )
}
pub fn stats(layout: &PinLayout) -> Result<StatsMap, MapsError> {
    typed(
        names::MAP_STATS,
        Map::PerCpuArray(open(layout, names::MAP_STATS)?),
    )
}

/// Kernel counters summed over CPUs, with their names.
pub fn read_stats(map: &StatsMap) -> Result<Vec<(&'static str, u64)>, MapsError> {
    (0..stat::COUNT)
        .map(|i| {
            let per_cpu = map.get(&i, 0).map_err(|source| MapsError::Map {
                map: names::MAP_STATS,
                source,
            })?;
            Ok((stat::NAMES[i as usize], per_cpu.iter().sum()))
        })
        .collect()
}

/// `BPF_MAP_GET_NEXT_KEY`'s part of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
struct NextKeyAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    next_key: u64,
    flags: u64,
}
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// Writes the key after `key` (the first key when `None`) into `next`;
/// `false` at the end of the map.
fn next_key(
    fd: std::os::fd::BorrowedFd<'_>,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let attr = NextKeyAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        next_key: next.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid BPF_MAP_GET_NEXT_KEY attribute; `key` and
    // `next` are live buffers of the map's key size (the caller sizes them
    // from the map's own info), and the kernel writes at most that many bytes.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_GET_NEXT_KEY,
            &attr as *const NextKeyAttr,
            std::mem::size_of::<NextKeyAttr>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// Entries in one map, whatever its key type. Keys are walked with
/// `BPF_MAP_GET_NEXT_KEY` (there is no count in the kernel's map info); the
/// walk is bounded because concurrent deletes can restart it from the top.
fn count_entries(map: &MapData) -> std::io::Result<u64> {
    use std::os::fd::AsFd as _;
    let info = map.info().map_err(std::io::Error::other)?;
    let size = info.key_size() as usize;
    let (mut key, mut next) = (vec![0u8; size], vec![0u8; size]);
    let fd = map.fd().as_fd();
    let mut count = 0u64;
    let bound = 2 * u64::from(info.max_entries()) + 1;
    let mut have_key = false;
    while count < bound && next_key(fd, have_key.then_some(&key[..]), &mut next)? {
        count += 1;
        have_key = true;
        std::mem::swap(&mut key, &mut next);
    }
    Ok(count.min(u64::from(info.max_entries())))
}

/// Entries of every pinned hash-type map of the instance (array maps are
/// always full, so they are left out), by pin name. Reads the directory, so
/// maps added later are included without a change here.
pub fn occupancy(layout: &PinLayout) -> Vec<(String, u64)> {
    use aya::maps::MapType;
    let Ok(dir) = std::fs::read_dir(layout.maps_dir()) else {
        return vec![];
    };
    let mut out: Vec<(String, u64)> = dir
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let map = MapData::from_pin(entry.path()).ok()?;
            let kind = map.info().ok()?.map_type().ok()?;
            if !matches!(
                kind,
                MapType::Hash
                    | MapType::LruHash
                    | MapType::PerCpuHash
                    | MapType::LruPerCpuHash
                    | MapType::LpmTrie
            ) {
                return None;
            }
            match count_entries(&map) {
                Ok(n) => Some((name, n)),
                Err(error) => {
                    tracing::debug!(map = %name, %error, "cannot count map entries");
                    None
                }
            }
        })
        .collect();
    out.sort();
    out
}
