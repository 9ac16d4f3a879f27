//! A single node and its pods (see `node.rs` for the network), with the
//! agent and pod servers. `cluster.rs` builds several nodes.
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use anyhow::Context as _;

use crate::{
    agent::{Agent, AgentSpec},
    bins::Binaries,
    cgroup::Cgroup,
    netns::Netns,
    node::NodeNet,
    pod::Server,
};

/// The single node's bridge address, which pods reach the agent on.
pub const NODE_IP: Ipv4Addr = NodeNet::bridge_ip(0);
pub const NODE_IP6: Ipv6Addr = NodeNet::bridge_ip6(0);

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

/// Field order is teardown order: agent and servers first, the node (pods,
/// namespace, cgroup) after, pins last (in `Drop`).
pub struct Topology {
    pub agent: Option<Agent>,
    pub servers: Vec<Server>,
    pub node: NodeNet,
    pub prefix: String,
    pub bins: Binaries,
}

impl Topology {
    /// Builds a node with pods named `pods`. `tag` prefixes every resource.
    pub fn new(tag: &str, bins: Binaries, pods: &[&str]) -> anyhow::Result<Self> {
        let cgroup_root = crate::host_setup::prepare()?;
        crate::sweep::sweep(tag);
        let prefix = crate::sweep::unique_prefix(tag);
        let cgroup = Cgroup::create(cgroup_root.join(&prefix))?;
        let mut node = NodeNet::create(&prefix, "node", 0, cgroup)?;
        for name in pods {
            node.add_pod(&prefix, name)?;
        }
        Ok(Self {
            agent: None,
            servers: vec![],
            node,
            prefix,
            bins,
        })
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.node
            .pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// The cgroup the agent attaches at.
    pub fn cgroup_root(&self) -> &std::path::Path {
        &self.node.cgroup.path
    }

    /// `<bpffs>/<instance>` of this topology's agent.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(&self.prefix)
    }

    pub fn agent_spec(&self) -> AgentSpec {
        AgentSpec {
            bin: self.bins.agent.clone(),
            instance: self.prefix.clone(),
            node_netns: self.node.netns.path(),
            cgroup_root: self.node.cgroup.path.clone(),
            redirect_ipv4: NODE_IP,
            redirect_ipv6: Some(NODE_IP6),
            extra_args: vec![],
            log: crate::agent::log_path(&self.prefix),
        }
    }

    pub fn start_agent(&mut self) -> anyhow::Result<&Agent> {
        anyhow::ensure!(self.agent.is_none(), "agent already running");
        let agent = Agent::start(self.agent_spec())?;
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
        let server = Server::serve(&self.bins.podctl, self.pod(pod), echo_port, sink_port)
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
        self.node.pods.clear();
        crate::agent::remove_pins_and_log(&self.pin_dir(), &crate::agent::log_path(&self.prefix));
    }
}
