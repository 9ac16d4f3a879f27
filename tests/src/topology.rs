//! A node and its pods: the node is a network namespace with a bridge
//! (`br0`, 10.244.0.1/24 and fd00::1/64); each pod is a network namespace
//! with `eth0` on that bridge (10.244.0.2, .3, … and fd00::2, ::3, …) and a cgroup v2 leaf under the node's
//! cgroup root, where the agent attaches its programs.
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use anyhow::Context as _;

use crate::{
    agent::Agent,
    bins::Binaries,
    cgroup::{self, Cgroup},
    netns::Netns,
    pod::Server,
};

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const NODE_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    pub netns: Netns,
    pub cgroup: Cgroup,
}

impl Pod {
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    pub fn addr6(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip6, port))
    }
}

/// Field order is teardown order: agent and servers first, namespaces and
/// cgroups after, pins last.
pub struct Topology {
    pub agent: Option<Agent>,
    pub servers: Vec<Server>,
    pub pods: Vec<Pod>,
    pub node: Netns,
    pub cgroup_root: Cgroup,
    pub prefix: String,
    pub bins: Binaries,
}

impl Topology {
    /// Builds a node with pods named `pods`. `tag` prefixes every resource.
    pub fn new(tag: &str, bins: Binaries, pods: &[&str]) -> anyhow::Result<Self> {
        crate::sweep::sweep(tag);
        let prefix = crate::sweep::unique_prefix(tag);
        let node = Netns::create(&format!("{prefix}-node"))?;
        node.exec(&["link", "add", "br0", "type", "bridge"])?;
        node.exec(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "br0"])?;
        // nodad: usable at once, no duplicate-address-detection delay.
        node.exec(&[
            "addr",
            "add",
            &format!("{NODE_IP6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        node.exec(&["link", "set", "br0", "up"])?;
        let cgroup_root = Cgroup::create(cgroup::cgroup2_mount()?.join(&prefix))?;
        let mut topo = Self {
            agent: None,
            servers: vec![],
            pods: vec![],
            node,
            cgroup_root,
            prefix,
            bins,
        };
        for name in pods {
            topo.add_pod(name)?;
        }
        Ok(topo)
    }

    fn add_pod(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self.pods.len();
        let ip = Ipv4Addr::new(10, 244, 0, 2 + u8::try_from(index)?);
        let ip6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2 + u16::try_from(index)?);
        let netns = Netns::create(&format!("{}-{name}", self.prefix))?;
        let veth = format!("veth{index}");
        crate::cmd::ip(&[
            "link",
            "add",
            &veth,
            "netns",
            &self.node.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns.name,
        ])?;
        self.node
            .exec(&["link", "set", &veth, "master", "br0", "up"])?;
        netns.exec(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        netns.exec(&["addr", "add", &format!("{ip6}/64"), "dev", "eth0", "nodad"])?;
        netns.exec(&["link", "set", "eth0", "up"])?;
        netns.exec(&["route", "add", "default", "via", &NODE_IP.to_string()])?;
        netns.exec(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &NODE_IP6.to_string(),
        ])?;
        let cgroup = Cgroup::create(self.cgroup_root.path.join(name))?;
        self.pods.push(Pod {
            name: name.to_string(),
            ip,
            ip6,
            netns,
            cgroup,
        });
        Ok(())
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// `<bpffs>/<instance>` of this topology's agent.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(&self.prefix)
    }

    pub fn start_agent(&mut self) -> anyhow::Result<&Agent> {
        anyhow::ensure!(self.agent.is_none(), "agent already running");
        let agent = Agent::start(self)?;
        Ok(self.agent.insert(agent))
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
    }

    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("agent not started")
    }

    /// Starts `podctl serve` in `pod` (echo on `echo_port`, optional sink).
    pub fn serve(
        &mut self,
        pod: &str,
        echo_port: u16,
        sink_port: Option<u16>,
    ) -> anyhow::Result<usize> {
        let echo = echo_port.to_string();
        let sink = sink_port.map(|p| p.to_string());
        let mut args = vec!["serve", "--echo-port", echo.as_str()];
        if let Some(sink) = &sink {
            args.extend(["--sink-port", sink.as_str()]);
        }
        let server = Server::start(&self.bins.podctl, self.pod(pod), &args)
            .with_context(|| format!("server in pod {pod}"))?;
        self.servers.push(server);
        Ok(self.servers.len() - 1)
    }

    /// Runs a podctl client command in `pod`.
    pub fn client(&self, pod: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        crate::pod::run(&self.bins.podctl, self.pod(pod), args)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop_agent();
        self.servers.clear();
        self.pods.clear();
        let pins = self.pin_dir();
        if let Err(e) = std::fs::remove_dir_all(&pins) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cleanup: cannot remove {}: {e}", pins.display());
            }
        }
        let log = crate::agent::log_path(&self.prefix);
        if std::thread::panicking() {
            eprintln!("agent log kept for inspection: {}", log.display());
        } else {
            let _ = std::fs::remove_file(log);
        }
    }
}
