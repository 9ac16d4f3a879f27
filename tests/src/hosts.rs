//! Name resolution inside pod network namespaces: `ip netns exec <netns>`
//! bind-mounts `/etc/netns/<netns>/hosts` over `/etc/hosts`, so service
//! names written there resolve for anything run that way.
use std::path::PathBuf;

/// The `ip netns exec` name-resolution file for a pod netns:
/// `/etc/netns/<netns>/hosts`, removed on drop.
pub struct HostsFile {
    dir: PathBuf,
}

impl HostsFile {
    /// Writes `entries` (ip, names…) as a hosts file for `netns`.
    pub fn write(netns: &str, entries: &[(std::net::IpAddr, Vec<String>)]) -> anyhow::Result<Self> {
        let dir = PathBuf::from("/etc/netns").join(netns);
        std::fs::create_dir_all(&dir)?;
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (ip, names) in entries {
            text += &format!("{ip} {}\n", names.join(" "));
        }
        std::fs::write(dir.join("hosts"), text)?;
        Ok(Self { dir })
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
