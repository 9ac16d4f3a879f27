//! Network-namespace cookies: the kernel's stable id of a netns, the key of
//! the enrolment map (`bpf_get_netns_cookie` on the kernel side).
use std::{
    fs::File,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use nix::{
    sched::{setns, CloneFlags},
    sys::socket::{socket, AddressFamily, SockFlag, SockType},
};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("cannot read the cookie of network namespace {path}")]
    Cookie {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `SO_NETNS_COOKIE` (Linux 5.14+), not yet in every libc crate release.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace at `path` (`/run/netns/x`,
/// `/proc/<pid>/ns/net`).
pub fn cookie_of(path: &Path) -> Result<u64, NetnsError> {
    enter(path, false).map(|(cookie, _)| cookie)
}

/// The cookie of the network namespace at `path` and the pod address in it
/// (its first global IPv4 address, else its first global IPv6 one). Enters
/// it on a short-lived thread, so the caller's namespace never changes.
pub fn identify(path: &Path) -> Result<(u64, Option<IpAddr>), NetnsError> {
    enter(path, true)
}

/// Enters the namespace at `path` on a short-lived thread and reads its
/// cookie, and its pod address when `address` (a `getifaddrs` dump the
/// reconciler's liveness checks do not need).
fn enter(path: &Path, address: bool) -> Result<(u64, Option<IpAddr>), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.into(),
        source,
    })?;
    let owned = path.to_path_buf();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                    NetnsError::Enter {
                        path: owned.clone(),
                        source,
                    }
                })?;
                let cookie = current_cookie().map_err(|source| NetnsError::Cookie {
                    path: owned,
                    source,
                })?;
                Ok((cookie, if address { pod_address() } else { None }))
            })
            .join()
            .expect("netns cookie thread panicked")
    })
}

/// The calling thread's namespace's first global address.
fn pod_address() -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

/// The cookie of the calling thread's network namespace.
pub fn current_cookie() -> std::io::Result<u64> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid socket fd; `cookie`/`len` point to live, correctly sized storage.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_cookie_is_stable_and_matches_the_path_lookup() {
        let here = current_cookie().unwrap();
        assert_ne!(here, 0);
        assert_eq!(cookie_of(Path::new("/proc/self/ns/net")).unwrap(), here);
    }

    #[test]
    fn missing_namespace_names_the_path() {
        let err = cookie_of(Path::new("/run/netns/definitely-missing")).unwrap_err();
        assert!(err.to_string().contains("definitely-missing"), "{err}");
    }
}
