//! The `strict_pods` map: pod addresses under PeerAuthentication STRICT,
//! enforced in the kernel by `mesh_inbound` (cgroup_skb ingress).
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv6Addr},
};

use aya::maps::{HashMap, MapData};

use super::{
    maps::{self, MapsError},
    pins::PinLayout,
};

/// 16-byte key: IPv4 mapped into IPv6, as the kernel program builds it.
fn key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

pub struct StrictPods {
    map: HashMap<MapData, [u8; 16], u8>,
}

impl StrictPods {
    pub fn open(layout: &PinLayout) -> Result<Self, MapsError> {
        Ok(Self {
            map: maps::strict(layout)?,
        })
    }

    /// Makes the map hold exactly `ips`.
    pub fn set(&mut self, ips: &BTreeSet<IpAddr>) -> Result<(), aya::maps::MapError> {
        let wanted: BTreeSet<[u8; 16]> = ips.iter().map(|ip| key(*ip)).collect();
        let present: BTreeSet<[u8; 16]> = self.map.keys().filter_map(Result::ok).collect();
        for stale in present.difference(&wanted) {
            match self.map.remove(stale) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        for new in wanted.difference(&present) {
            self.map.insert(new, 1, 0)?;
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<IpAddr> {
        self.map
            .keys()
            .filter_map(Result::ok)
            .map(|k| {
                let v6 = Ipv6Addr::from(k);
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            })
            .collect()
    }
}
