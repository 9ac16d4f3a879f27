//! The `probe_ports` map: ports of STRICT pods that take plaintext from the
//! node address, because the kubelet probes them from there. Any other
//! node-address connection to a STRICT pod is dropped by `mesh_inbound`
//! (hostNetwork pods, SNATed NodePort traffic), unless the agent's own
//! socket opened it. The agent keeps the map equal to the probe ports
//! (httpGet/tcpSocket/grpc probes, from the Workload resource) of its
//! node's pods that are in `strict_pods` (`mesh::policy_sync`).
use std::{collections::BTreeSet, net::IpAddr};

use mesh_common::ProbePort;

use super::{
    enroll::mapped,
    maps::{self, MapsError, ProbePortsMap},
    pins::PinLayout,
};

pub struct ProbePorts {
    map: ProbePortsMap,
}

fn key((ip, port): (IpAddr, u16)) -> ProbePort {
    ProbePort {
        addr: mapped(ip),
        port,
        _pad: [0; 6],
    }
}

impl ProbePorts {
    pub fn open(layout: &PinLayout) -> Result<Self, MapsError> {
        Ok(Self {
            map: maps::probe_ports(layout)?,
        })
    }

    /// Makes the map hold exactly `wanted` (pod address, port) pairs.
    pub fn set(&mut self, wanted: &BTreeSet<(IpAddr, u16)>) -> Result<(), aya::maps::MapError> {
        let wanted: BTreeSet<(IpAddr, u16)> = wanted
            .iter()
            .map(|(ip, port)| (ip.to_canonical(), *port))
            .collect();
        let present: Vec<ProbePort> = self.map.keys().filter_map(Result::ok).collect();
        for stale in present {
            let Some(ip) = super::enroll::unmapped(stale.addr) else {
                continue;
            };
            if !wanted.contains(&(ip, stale.port)) {
                match self.map.remove(&stale) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for pair in &wanted {
            self.map.insert(key(*pair), 1, 0)?;
        }
        tracing::debug!(entries = wanted.len(), "probe_ports updated");
        Ok(())
    }

    /// The (pod address, port) pairs the map holds, sorted.
    pub fn list(&self) -> Vec<(IpAddr, u16)> {
        let pairs: BTreeSet<(IpAddr, u16)> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| Some((super::enroll::unmapped(k.addr)?, k.port)))
            .collect();
        pairs.into_iter().collect()
    }
}
