//! Typed handles on the pinned maps, for everything that runs after load:
//! the daemon, and the `enroll`/`status` subcommands (which need no daemon).
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use mesh_common::{
    names, stat, CaptureConfig, ConnTuple, DenyKey, Enrollment, PortExclusion, SockAddr,
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
