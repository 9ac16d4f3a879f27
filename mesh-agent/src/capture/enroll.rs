//! Enrolment is a map update: no program is attached per pod. A pod is
//! identified by its network namespace cookie.
use std::{
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use mesh_common::{Enrollment, PortExclusion, ENROLL_CAPTURE_OUTBOUND};
use serde::Serialize;

use super::{
    maps::{self, MapsError},
    netns::{self, NetnsError},
    pins::PinLayout,
};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("updating {map} for netns cookie {cookie}")]
    Update {
        map: &'static str,
        cookie: u64,
        source: aya::maps::MapError,
    },
}

/// 16 bytes, IPv4 mapped, as the maps keep addresses.
pub fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address behind [`mapped`] bytes; `None` for all zero.
pub fn unmapped(bytes: [u8; 16]) -> Option<IpAddr> {
    if bytes == [0; 16] {
        return None;
    }
    let v6 = Ipv6Addr::from(bytes);
    Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
}

/// A delete of a key that is not there: aya reports the kernel's ENOENT
/// as a syscall error, not as `KeyNotFound`.
fn is_missing(error: &aya::maps::MapError) -> bool {
    match error {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// One enrolled pod as the kernel sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnrolledPod {
    pub netns_cookie: u64,
    /// The pod's address found in its namespace at enrolment.
    pub pod_ip: Option<IpAddr>,
    pub capture_outbound: bool,
    pub excluded_ports: Vec<u16>,
}

/// Handle on the enrolment maps of one agent instance.
pub struct Enroller {
    enrolled: maps::EnrolledMap,
    excluded: maps::ExcludedMap,
}

impl Enroller {
    pub fn open(layout: &PinLayout) -> Result<Self, EnrollError> {
        Ok(Self {
            enrolled: maps::enrolled(layout)?,
            excluded: maps::excluded(layout)?,
        })
    }

    /// Enrols the pod whose network namespace is at `netns_path`; replaces
    /// its port exclusions with `exclude_ports`. Returns the netns cookie.
    pub fn enroll(&mut self, netns_path: &Path, exclude_ports: &[u16]) -> Result<u64, EnrollError> {
        let (cookie, pod_ip) = netns::identify(netns_path)?;
        self.clear_exclusions(cookie)?;
        // Exclusions first, so no connection is captured that should not be.
        for &port in exclude_ports {
            let key = PortExclusion {
                netns_cookie: cookie,
                port,
                _pad: [0; 6],
            };
            self.excluded
                .insert(key, 1, 0)
                .map_err(|source| EnrollError::Update {
                    map: mesh_common::names::MAP_EXCLUDED,
                    cookie,
                    source,
                })?;
        }
        let value = Enrollment {
            flags: ENROLL_CAPTURE_OUTBOUND,
            _reserved: 0,
            pod_ip: pod_ip.map(mapped).unwrap_or_default(),
        };
        self.enrolled
            .insert(cookie, value, 0)
            .map_err(|source| EnrollError::Update {
                map: mesh_common::names::MAP_ENROLLED,
                cookie,
                source,
            })?;
        Ok(cookie)
    }

    /// Unenrols by namespace path. Returns the cookie and whether it was enrolled.
    pub fn unenroll(&mut self, netns_path: &Path) -> Result<(u64, bool), EnrollError> {
        let cookie = netns::cookie_of(netns_path)?;
        Ok((cookie, self.unenroll_cookie(cookie)?))
    }

    /// Unenrols by cookie (also works once the namespace is gone).
    pub fn unenroll_cookie(&mut self, cookie: u64) -> Result<bool, EnrollError> {
        let was = match self.enrolled.remove(&cookie) {
            Ok(()) => true,
            Err(e) if is_missing(&e) => false,
            Err(source) => {
                return Err(EnrollError::Update {
                    map: mesh_common::names::MAP_ENROLLED,
                    cookie,
                    source,
                })
            }
        };
        self.clear_exclusions(cookie)?;
        Ok(was)
    }

    fn clear_exclusions(&mut self, cookie: u64) -> Result<(), EnrollError> {
        let keys: Vec<PortExclusion> = self
            .excluded
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.netns_cookie == cookie)
            .collect();
        for key in keys {
            match self.excluded.remove(&key) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(source) => {
                    return Err(EnrollError::Update {
                        map: mesh_common::names::MAP_EXCLUDED,
                        cookie,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Every enrolled pod, sorted by cookie.
    pub fn list(&self) -> Vec<EnrolledPod> {
        let mut pods: Vec<EnrolledPod> = self
            .enrolled
            .iter()
            .filter_map(Result::ok)
            .map(|(cookie, e)| EnrolledPod {
                netns_cookie: cookie,
                pod_ip: unmapped(e.pod_ip),
                capture_outbound: e.flags & ENROLL_CAPTURE_OUTBOUND != 0,
                excluded_ports: Vec::new(),
            })
            .collect();
        for key in self.excluded.keys().filter_map(Result::ok) {
            if let Some(pod) = pods.iter_mut().find(|p| p.netns_cookie == key.netns_cookie) {
                pod.excluded_ports.push(key.port);
            }
        }
        pods.sort_by_key(|p| p.netns_cookie);
        for pod in &mut pods {
            pod.excluded_ports.sort_unstable();
        }
        pods
    }
}
