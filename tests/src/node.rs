//! One node's network: a network namespace with a bridge (`br0`) for its
//! pods, the pods themselves (netns + veth + cgroup leaf), and the node's
//! cgroup directory the agent attaches to. Node `i` uses 10.244.i.0/24 and
//! fd00:0:0:i::/64, the bridge holding `.1` / `::1`.
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{cgroup::Cgroup, netns::Netns, topology::Pod};

pub struct NodeNet {
    pub name: String,
    pub index: u8,
    /// Pods first: they go before the node namespace and cgroup on drop.
    pub pods: Vec<Pod>,
    pub netns: Netns,
    pub cgroup: Cgroup,
}

impl NodeNet {
    pub const fn bridge_ip(index: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, index, 1)
    }

    pub const fn bridge_ip6(index: u8) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, index as u16, 0, 0, 0, 1)
    }

    /// Creates the node namespace `<prefix>-<name>` with its bridge; `cgroup`
    /// becomes the node's cgroup (pods get leaves below it).
    pub fn create(prefix: &str, name: &str, index: u8, cgroup: Cgroup) -> anyhow::Result<Self> {
        let netns = Netns::create(&format!("{prefix}-{name}"))?;
        netns.exec(&["link", "add", "br0", "type", "bridge"])?;
        let ip4 = format!("{}/24", Self::bridge_ip(index));
        let ip6 = format!("{}/64", Self::bridge_ip6(index));
        netns.exec(&["addr", "add", &ip4, "dev", "br0"])?;
        // nodad: usable at once, no duplicate-address-detection delay.
        netns.exec(&["addr", "add", &ip6, "dev", "br0", "nodad"])?;
        netns.exec(&["link", "set", "br0", "up"])?;
        Ok(Self {
            name: name.to_string(),
            index,
            pods: vec![],
            netns,
            cgroup,
        })
    }

    pub fn add_pod(&mut self, prefix: &str, name: &str) -> anyhow::Result<&Pod> {
        let slot = self.pods.len();
        let ip = Ipv4Addr::new(10, 244, self.index, 2 + u8::try_from(slot)?);
        let ip6 = Ipv6Addr::new(
            0xfd00,
            0,
            0,
            u16::from(self.index),
            0,
            0,
            0,
            2 + u16::try_from(slot)?,
        );
        // An empty prefix names the namespace after the pod itself (the
        // demo: `ip netns exec productpage …`).
        let netns_name = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}-{name}")
        };
        let netns = Netns::create(&netns_name)?;
        let veth = format!("veth{slot}");
        crate::cmd::ip(&[
            "link",
            "add",
            &veth,
            "netns",
            &self.netns.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns.name,
        ])?;
        self.netns
            .exec(&["link", "set", &veth, "master", "br0", "up"])?;
        netns.exec(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        netns.exec(&["addr", "add", &format!("{ip6}/64"), "dev", "eth0", "nodad"])?;
        netns.exec(&["link", "set", "eth0", "up"])?;
        netns.exec(&[
            "route",
            "add",
            "default",
            "via",
            &Self::bridge_ip(self.index).to_string(),
        ])?;
        let gw6 = Self::bridge_ip6(self.index).to_string();
        netns.exec(&["-6", "route", "add", "default", "via", &gw6])?;
        let cgroup = Cgroup::create(self.cgroup.path.join(name))?;
        self.pods.push(Pod {
            name: name.to_string(),
            ip,
            ip6,
            netns,
            cgroup,
        });
        Ok(self.pods.last().expect("just pushed"))
    }
}
