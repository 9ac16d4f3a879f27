//! Where an admin endpoint is: `host:port`, or the name of a network
//! namespace under `/run/netns` (what `ip netns add` creates), in which
//! case meshctl enters that namespace and talks to `127.0.0.1:15000` there —
//! the admin ports listen on loopback only, so from outside a node's
//! namespace they are unreachable.
//!
//! Entering must happen before the tokio runtime (or any other thread)
//! starts: `setns` moves only the calling thread, and every socket meshctl
//! opens must be created in the namespace.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use nix::sched::CloneFlags;

/// The admin address inside a namespace, and the default target.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15000";
/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// The admin port, used when a bare IP is given.
const ADMIN_PORT: u16 = 15000;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{text:?} is neither host:port nor a network namespace in {dir} \
         (`ip netns list` shows the namespaces)"
    )]
    Unknown { text: String, dir: String },
    #[error("cannot open network namespace {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot enter network namespace {name}: {errno}{hint}",
        hint = if *errno == nix::errno::Errno::EPERM {
            " (entering a namespace needs root: run meshctl with sudo)"
        } else {
            ""
        }
    )]
    Enter {
        name: String,
        errno: nix::errno::Errno,
    },
}

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port` (a name is resolved when connecting).
    Addr(String),
    /// A named network namespace; the admin endpoint is [`DEFAULT_ADMIN`] in it.
    Netns(String),
}

impl Default for Target {
    fn default() -> Self {
        Target::Addr(DEFAULT_ADMIN.into())
    }
}

fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    if port.is_empty() || port.parse::<u16>().is_err() || host.is_empty() {
        return false;
    }
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.contains(':'),
    }
}

impl Target {
    /// Parses `text`, looking namespaces up in `netns_dir` (normally
    /// [`NETNS_DIR`]). A bare IP means that IP on the admin port.
    pub fn parse(text: &str, netns_dir: &Path) -> Result<Target, TargetError> {
        let text = text.trim();
        if is_host_port(text) {
            return Ok(Target::Addr(text.to_string()));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Target::Addr(
                std::net::SocketAddr::new(ip, ADMIN_PORT).to_string(),
            ));
        }
        let plain_name = !text.is_empty() && !text.contains('/') && text != "." && text != "..";
        if plain_name && netns_dir.join(text).exists() {
            return Ok(Target::Netns(text.to_string()));
        }
        Err(TargetError::Unknown {
            text: text.to_string(),
            dir: netns_dir.display().to_string(),
        })
    }

    /// The address to connect to (after [`Target::enter`]).
    pub fn admin_addr(&self) -> &str {
        match self {
            Target::Addr(addr) => addr,
            Target::Netns(_) => DEFAULT_ADMIN,
        }
    }

    /// For messages: `10.0.0.1:15000` or `127.0.0.1:15000 in netns node1`.
    pub fn describe(&self) -> String {
        match self {
            Target::Addr(addr) => addr.clone(),
            Target::Netns(name) => format!("{DEFAULT_ADMIN} in netns {name}"),
        }
    }

    /// Moves this thread into the target's network namespace (no-op for an
    /// address). Call before starting any runtime or thread.
    pub fn enter(&self, netns_dir: &Path) -> Result<(), TargetError> {
        let Target::Netns(name) = self else {
            return Ok(());
        };
        let path = netns_dir.join(name);
        let file = std::fs::File::open(&path).map_err(|source| TargetError::Open {
            path: path.clone(),
            source,
        })?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| TargetError::Enter {
            name: name.clone(),
            errno,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_names_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node1"), "").unwrap();
        let parse = |t: &str| Target::parse(t, dir.path());
        assert_eq!(
            parse("10.0.0.1:15000").unwrap(),
            Target::Addr("10.0.0.1:15000".into())
        );
        assert_eq!(
            parse("localhost:15000").unwrap(),
            Target::Addr("localhost:15000".into())
        );
        assert_eq!(
            parse("[::1]:15000").unwrap(),
            Target::Addr("[::1]:15000".into())
        );
        assert_eq!(
            parse("10.0.0.2").unwrap(),
            Target::Addr("10.0.0.2:15000".into())
        );
        assert_eq!(parse("::1").unwrap(), Target::Addr("[::1]:15000".into()));
        let ns = parse("node1").unwrap();
        assert_eq!(ns, Target::Netns("node1".into()));
        assert_eq!(ns.admin_addr(), "127.0.0.1:15000");
        assert_eq!(ns.describe(), "127.0.0.1:15000 in netns node1");
        assert_eq!(Target::default().admin_addr(), "127.0.0.1:15000");
        for bad in ["node2", "", "../node1", "host:port", "host:99999", "a:b:1"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("neither host:port nor a network namespace"),
                "{bad}: {err}"
            );
        }
        assert!(parse("node2")
            .unwrap_err()
            .to_string()
            .contains("`ip netns list`"));
    }

    #[test]
    fn entering_a_missing_namespace_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let err = Target::Netns("gone".into()).enter(dir.path()).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot open network namespace"),
            "{err}"
        );
        // An address needs no namespace.
        Target::Addr("127.0.0.1:1".into())
            .enter(dir.path())
            .unwrap();
    }
}
