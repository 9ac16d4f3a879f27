//! Several nodes and one control plane. An underlay network namespace holds
//! a bridge (10.0.0.254/24) every node is plugged into (node `i` is
//! 10.0.0.i, its pods 10.244.i.0/24, routed between nodes), and runs
//! `mesh-control` on 10.0.0.254:15010/15012 with a YAML directory the
//! harness writes from the topology (plus whatever a test adds).
use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use mesh_testkit::{try_eventually, Attempt};

use crate::{
    agent::{Agent, AgentSpec},
    bins::Binaries,
    cgroup::{self, Cgroup},
    envoy::WaypointNode,
    hosts::HostsFile,
    netns::Netns,
    node::NodeNet,
    pod::Server,
    topology::Pod,
    waypoint::{MeshWaypoint, WaypointSpec},
};

pub const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// mesh-control's admin endpoint (its default), inside the underlay.
pub const CONTROL_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);

pub fn node_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, index)
}

/// The control plane process; killed on drop.
pub struct ControlPlane {
    child: Child,
    pub log: PathBuf,
}

impl ControlPlane {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        crate::cmd::terminate(&mut self.child);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Field order is teardown order.
pub struct Cluster {
    pub waypoints: Vec<MeshWaypoint>,
    pub agents: BTreeMap<String, Agent>,
    pub servers: Vec<Server>,
    pub control: Option<ControlPlane>,
    pub nodes: Vec<NodeNet>,
    pub underlay: Netns,
    pub cgroup: Cgroup,
    /// Temporary directory: `config/` (YAML source), `ca/` (mesh CA).
    pub dir: PathBuf,
    pub prefix: String,
    pub bins: Binaries,
    /// Pod name → (node name, service account).
    pub placement: BTreeMap<String, (String, String)>,
    /// Agents talk to the control plane over TLS (15012) instead of 15010.
    pub xds_tls: bool,
    /// Extra labels per pod (besides `app`), written into the topology.
    pub pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Extra `spec` YAML per pod (besides `serviceAccountName` and
    /// `nodeName`), written unindented; the topology indents it.
    pub pod_spec_extra: BTreeMap<String, String>,
    /// Extra labels of every namespace (besides ambient mode).
    pub namespace_labels: BTreeMap<String, String>,
    /// Pod → namespace, for pods not in `default`.
    pub pod_namespaces: BTreeMap<String, String>,
    /// `/etc/netns/<pod netns>/hosts` files (service names for `ip netns exec`).
    pub hosts: Vec<HostsFile>,
    /// Agents attach at the cgroup v2 root instead of their node's cgroup.
    pub attach_at_root: bool,
}

impl Cluster {
    /// `nodes`: node name → its pods. Pod service accounts default to the
    /// pod name; every pod is in namespace `default`, labelled ambient.
    pub fn new(tag: &str, bins: Binaries, nodes: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        Self::build(tag, bins, nodes, false)
    }

    /// Like [`Cluster::new`], for a person at a shell: pod network
    /// namespaces are named after the pods (`ip netns exec reviews-v1 …`;
    /// stale ones of the same name are removed first) and the agents attach
    /// at the cgroup v2 root, so a shell's `ip netns exec <pod> curl …` is
    /// captured like the pod's own processes.
    pub fn for_people(
        tag: &str,
        bins: Binaries,
        nodes: &[(&str, &[&str])],
    ) -> anyhow::Result<Self> {
        for (_, pods) in nodes {
            for pod in *pods {
                let _ = crate::cmd::ip(&["netns", "del", pod]);
            }
        }
        Self::build(tag, bins, nodes, true)
    }

    fn build(
        tag: &str,
        bins: Binaries,
        nodes: &[(&str, &[&str])],
        for_people: bool,
    ) -> anyhow::Result<Self> {
        let cgroup_root = crate::host_setup::prepare()?;
        crate::sweep::sweep(tag);
        let prefix = crate::sweep::unique_prefix(tag);
        let cgroup = Cgroup::create(cgroup_root.join(&prefix))?;
        let underlay = Netns::create(&format!("{prefix}-net"))?;
        underlay.exec(&["link", "add", "br-u", "type", "bridge"])?;
        underlay.exec(&["addr", "add", &format!("{CONTROL_IP}/24"), "dev", "br-u"])?;
        underlay.exec(&["link", "set", "br-u", "up"])?;
        let dir = std::env::temp_dir().join(format!("{prefix}-cluster"));
        std::fs::create_dir_all(dir.join("config"))?;
        let mut cluster = Self {
            agents: BTreeMap::new(),
            servers: vec![],
            control: None,
            nodes: vec![],
            underlay,
            cgroup,
            dir,
            prefix,
            bins,
            placement: BTreeMap::new(),
            xds_tls: false,
            pod_labels: BTreeMap::new(),
            pod_spec_extra: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            pod_namespaces: BTreeMap::new(),
            hosts: vec![],
            waypoints: vec![],
            attach_at_root: for_people,
        };
        let count = u8::try_from(nodes.len())?;
        for (i, (name, pods)) in nodes.iter().enumerate() {
            let index = u8::try_from(i)? + 1;
            cluster.add_node(name, index, count)?;
            for pod in *pods {
                let prefix = if for_people {
                    String::new()
                } else {
                    cluster.prefix.clone()
                };
                cluster.node_mut(name).add_pod(&prefix, pod)?;
                cluster
                    .placement
                    .insert(pod.to_string(), (name.to_string(), pod.to_string()));
            }
        }
        cluster.write_config("00-topology.yaml", &cluster.topology_yaml())?;
        Ok(cluster)
    }

    fn add_node(&mut self, name: &str, index: u8, count: u8) -> anyhow::Result<()> {
        let cgroup = Cgroup::create(self.cgroup.path.join(name))?;
        let node = NodeNet::create(&self.prefix, name, index, cgroup)?;
        let uplink = format!("n{index}");
        crate::cmd::ip(&[
            "link",
            "add",
            &uplink,
            "netns",
            &self.underlay.name,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &node.netns.name,
        ])?;
        self.underlay
            .exec(&["link", "set", &uplink, "master", "br-u", "up"])?;
        // Pods that talk to the control plane themselves (a waypoint) need
        // the way back.
        self.underlay.exec(&[
            "route",
            "add",
            &format!("10.244.{index}.0/24"),
            "via",
            &node_ip(index).to_string(),
        ])?;
        node.netns.exec(&[
            "addr",
            "add",
            &format!("{}/24", node_ip(index)),
            "dev",
            "up0",
        ])?;
        node.netns.exec(&["link", "set", "up0", "up"])?;
        for other in 1..=count {
            if other != index {
                let subnet = format!("10.244.{other}.0/24");
                node.netns
                    .exec(&["route", "add", &subnet, "via", &node_ip(other).to_string()])?;
            }
        }
        let netns_arg = format!("--net={}", node.netns.path().display());
        crate::cmd::run(
            "nsenter",
            &[
                &netns_arg,
                "--",
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ],
        )?;
        self.nodes.push(node);
        Ok(())
    }

    pub fn node(&self, name: &str) -> &NodeNet {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeNet {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.nodes
            .iter()
            .flat_map(|n| n.pods.iter())
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("config")
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// Writes (or replaces) a file in the control plane's YAML directory.
    pub fn write_config(&self, file: &str, yaml: &str) -> anyhow::Result<()> {
        let tmp = self.config_dir().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml)?;
        // Rename: the control plane never sees a half-written file.
        std::fs::rename(&tmp, self.config_dir().join(file))?;
        Ok(())
    }

    /// Namespace `default` (ambient), the nodes and the pods as Kubernetes
    /// YAML. Pods carry `app: <name without trailing digits>`.
    pub fn topology_yaml(&self) -> String {
        let mut namespaces: std::collections::BTreeSet<&str> =
            self.pod_namespaces.values().map(String::as_str).collect();
        namespaces.insert("default");
        let mut out = String::new();
        for ns in namespaces {
            if !out.is_empty() {
                out += "---\n";
            }
            out += &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    istio.io/dataplane-mode: ambient\n"
            );
            for (k, v) in &self.namespace_labels {
                out += &format!("    {k}: {v:?}\n");
            }
        }
        for node in &self.nodes {
            out += &format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: {}\n",
                node.name,
                node_ip(node.index)
            );
            for pod in &node.pods {
                // `app` drops trailing digits: web1 and web2 are both `app: web`.
                let mut labels = BTreeMap::from([(
                    "app".to_string(),
                    pod.name
                        .trim_end_matches(|c: char| c.is_ascii_digit())
                        .to_string(),
                )]);
                labels.extend(self.pod_labels.get(&pod.name).cloned().unwrap_or_default());
                let labels: String = labels
                    .iter()
                    .map(|(k, v)| format!("    {k}: {v:?}\n"))
                    .collect();
                let spec_extra: String = self
                    .pod_spec_extra
                    .get(&pod.name)
                    .map(|yaml| yaml.lines().map(|l| format!("  {l}\n")).collect())
                    .unwrap_or_default();
                out += &format!(
                    "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n{labels}spec:\n  serviceAccountName: {name}\n  nodeName: {node}\n{spec_extra}status:\n  podIP: {ip}\n",
                    name = pod.name,
                    ns = self.namespace_of(&pod.name),
                    node = node.name,
                    ip = pod.ip
                );
            }
        }
        out
    }

    pub fn start_control(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        anyhow::ensure!(self.control.is_none(), "control plane already running");
        let log = std::env::temp_dir().join(format!("{}-control.log", self.prefix));
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.underlay.path().display()))
            .arg("--")
            .arg(&self.bins.control)
            .arg("--config-dir")
            .arg(self.config_dir())
            .arg("--ca-dir")
            .arg(self.ca_dir())
            .args(["--xds-addr", &format!("{CONTROL_IP}:15010")])
            .args(["--xds-tls-addr", &format!("{CONTROL_IP}:15012")])
            .args(if extra.contains(&"--reload-interval") {
                &[][..]
            } else {
                &["--reload-interval", "200ms"][..]
            })
            // Agents reach the control plane over the node bridge, not
            // loopback: serving identities there without authentication is
            // this lab's explicit choice unless the caller picks a mode.
            .args(if extra.contains(&"--authenticate") {
                &[][..]
            } else {
                &["--authenticate", "none"][..]
            })
            .args(extra)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting mesh-control")?;
        let mut control = ControlPlane { child, log };
        let addr = SocketAddr::from((CONTROL_IP, 15010));
        let listening = try_eventually("mesh-control listening", Duration::from_secs(20), || {
            match control.child.try_wait() {
                Ok(Some(status)) => {
                    return Attempt::GiveUp(format!("mesh-control exited ({status})"))
                }
                Err(e) => return Attempt::GiveUp(format!("mesh-control: {e}")),
                Ok(None) => {}
            }
            let up =
                crate::netns::connect_in(&self.underlay.path(), addr, Duration::from_millis(200));
            match (up, self.ca_dir().join("root-cert.pem").exists()) {
                (Ok(_), true) => Attempt::Done(()),
                (Ok(_), false) => Attempt::Pending("no root-cert.pem yet".into()),
                (Err(e), _) => Attempt::Pending(format!("{addr}: {e:#}")),
            }
        });
        if let Err(e) = listening {
            if !e.gave_up {
                control.stop();
            }
            bail!("{e}:\n{}", tail(&control.log));
        }
        self.control = Some(control);
        Ok(())
    }

    pub fn stop_control(&mut self) {
        if let Some(mut control) = self.control.take() {
            control.stop();
        }
    }

    /// mesh-control's `/debug/syncz` (docs/contracts/control-admin.md).
    pub fn control_syncz(&self) -> anyhow::Result<serde_json::Value> {
        let body = crate::netns::http_get_in(&self.underlay.path(), CONTROL_ADMIN, "/debug/syncz")?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Waits until mesh-control has streams to proxies whose node id
    /// starts with `node_prefix` (`waypoint~`, `ztunnel~10.244.1.1~`) and every
    /// type of each is SYNCED: the proxy ACKed the server's current
    /// version, so everything it was sent has been applied.
    pub fn wait_control_synced(&self, node_prefix: &str, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("proxies {node_prefix}* SYNCED at mesh-control's version");
        try_eventually(&what, timeout, || {
            let doc = self.control_syncz()?;
            let streams: Vec<&serde_json::Value> = doc["proxies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    p["node_id"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(node_prefix))
                })
                .collect();
            let synced = |p: &&serde_json::Value| {
                p["types"]
                    .as_object()
                    .is_some_and(|t| t.values().all(|t| t["status"] == "SYNCED"))
            };
            if !streams.is_empty() && streams.iter().all(synced) {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{doc}"))
            }
        })?;
        Ok(())
    }

    pub fn instance(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    pub fn agent_spec(&self, node: &str, extra: &[&str]) -> AgentSpec {
        let n = self.node(node);
        let mut extra_args: Vec<String> = vec![
            "--node-name".into(),
            node.into(),
            "--xds-addr".into(),
            if self.xds_tls {
                format!("https://{CONTROL_IP}:15012")
            } else {
                format!("http://{CONTROL_IP}:15010")
            },
            "--trust-bundle".into(),
            self.ca_dir().join("root-cert.pem").display().to_string(),
            "--hbone-addr".into(),
            format!("{}:15008", node_ip(n.index)),
        ];
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        AgentSpec {
            bin: self.bins.agent.clone(),
            instance: self.instance(node),
            node_netns: n.netns.path(),
            cgroup_root: if self.attach_at_root {
                cgroup::cgroup2_mount().unwrap_or_else(|_| n.cgroup.path.clone())
            } else {
                n.cgroup.path.clone()
            },
            redirect_ipv4: NodeNet::bridge_ip(n.index),
            redirect_ipv6: None,
            extra_args,
            log: std::env::temp_dir().join(format!("{}-agent.log", self.instance(node))),
        }
    }

    /// Starts the agent of `node` and enrols all its pods.
    pub fn start_agent(&mut self, node: &str, extra: &[&str]) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.agents.contains_key(node),
            "agent on {node} already running"
        );
        let agent = Agent::start(self.agent_spec(node, extra))?;
        for pod in &self.node(node).pods {
            if !self.captured(&pod.name) {
                continue;
            }
            agent.enroll(pod, &[])?;
        }
        self.agents.insert(node.to_string(), agent);
        Ok(())
    }

    pub fn stop_agent(&mut self, node: &str) {
        if let Some(mut agent) = self.agents.remove(node) {
            agent.stop();
        }
    }

    pub fn agent(&self, node: &str) -> &Agent {
        self.agents
            .get(node)
            .unwrap_or_else(|| panic!("no agent on {node}"))
    }

    /// Waits (at most 30 s) until `node`'s agent is connected to the control
    /// plane, knows at least `workloads` workloads and holds certificates for
    /// the service accounts `identities` (namespace `default`). Returns its
    /// `/stats/mesh`.
    pub fn wait_ready(
        &self,
        node: &str,
        workloads: usize,
        identities: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        let wanted: Vec<String> = identities
            .iter()
            .map(|sa| format!("spiffe://cluster.local/ns/default/sa/{sa}"))
            .collect();
        let what = format!("the agent on {node} ready (xDS, workloads, certificates)");
        let ready = try_eventually(&what, Duration::from_secs(30), || {
            let m = self.agent(node).mesh()?;
            let certs: Vec<&str> = m["certificates"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["identity"].as_str()).collect())
                .unwrap_or_default();
            let known = m["workloads"].as_array().map_or(0, Vec::len);
            if m["xds_connected"] == true
                && known >= workloads
                && wanted.iter().all(|id| certs.contains(&id.as_str()))
            {
                Ok(m)
            } else {
                Err(anyhow::anyhow!("{m}"))
            }
        })?;
        // Each enrolled mesh pod of the node serves HBONE on its own
        // address (the agent's listener inside the pod's namespace).
        let mesh_ips: Vec<String> = ready["workloads"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|w| w["mesh"] == true)
                    .flat_map(|w| w["ips"].as_array().cloned().unwrap_or_default())
                    .filter_map(|ip| ip.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let capture = self.agent(node).capture()?;
        let enrolled: Vec<String> = capture["enrolled"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["pod_ip"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for pod in &self.node(node).pods {
            let ip = pod.ip.to_string();
            if !enrolled.contains(&ip) || !mesh_ips.contains(&ip) {
                continue;
            }
            let what = format!("the HBONE listener of {} ({}:15008)", pod.name, pod.ip);
            try_eventually(&what, Duration::from_secs(10), || {
                if hbone_listening(pod)? {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("not listening yet"))
                }
            })?;
        }
        Ok(ready)
    }

    pub fn serve(
        &mut self,
        pod: &str,
        echo_port: u16,
        sink_port: Option<u16>,
    ) -> anyhow::Result<usize> {
        let server = Server::serve(&self.bins.podctl, self.pod(pod), echo_port, sink_port)?;
        self.servers.push(server);
        Ok(self.servers.len() - 1)
    }

    /// `podctl <args>` in `pod`, in the background, once it printed a line
    /// matching `ready`; killed with the cluster.
    pub fn background(
        &mut self,
        pod: &str,
        args: &[&str],
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<usize> {
        let server = Server::start_until(&self.bins.podctl, self.pod(pod), args, ready)?;
        self.servers.push(server);
        Ok(self.servers.len() - 1)
    }

    pub fn client(&self, pod: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        crate::pod::run(&self.bins.podctl, self.pod(pod), args)
    }

    /// Adds labels to a pod (e.g. `version`) and rewrites the topology.
    pub fn label_pod(&mut self, pod: &str, labels: &[(&str, &str)]) -> anyhow::Result<()> {
        let entry = self.pod_labels.entry(pod.to_string()).or_default();
        for (k, v) in labels {
            entry.insert(k.to_string(), v.to_string());
        }
        self.write_config("00-topology.yaml", &self.topology_yaml())
    }

    /// Adds `yaml` (e.g. `containers:` with probes) to a pod's `spec` and
    /// rewrites the topology.
    pub fn set_pod_spec_extra(&mut self, pod: &str, yaml: &str) -> anyhow::Result<()> {
        self.pod_spec_extra
            .insert(pod.to_string(), yaml.to_string());
        self.write_config("00-topology.yaml", &self.topology_yaml())
    }

    /// The namespace of a pod (`default` unless moved).
    pub fn namespace_of(&self, pod: &str) -> &str {
        self.pod_namespaces
            .get(pod)
            .map_or("default", String::as_str)
    }

    /// Moves pods to namespace `ns` (ambient, with the common labels).
    pub fn move_pods(&mut self, ns: &str, pods: &[&str]) -> anyhow::Result<()> {
        for pod in pods {
            self.pod_namespaces.insert(pod.to_string(), ns.to_string());
        }
        self.write_config("00-topology.yaml", &self.topology_yaml())
    }

    /// Adds a label to every namespace (e.g. `istio.io/use-waypoint`).
    pub fn label_namespace(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        self.namespace_labels
            .insert(key.to_string(), value.to_string());
        self.write_config("00-topology.yaml", &self.topology_yaml())
    }

    /// False for a waypoint's pod or one opted out of the mesh: the harness
    /// does not enrol it.
    pub fn captured(&self, pod: &str) -> bool {
        self.pod_labels.get(pod).is_none_or(|l| !never_captured(l))
    }

    /// Makes `pod` the pod of waypoint `name` (a `Gateway` of class
    /// `istio-waypoint` in `default`), before the agents start.
    pub fn declare_waypoint(&mut self, pod: &str, name: &str) -> anyhow::Result<()> {
        self.label_pod(pod, &[("gateway.networking.k8s.io/gateway-name", name)])?;
        let ns = self.namespace_of(pod).to_string();
        self.write_config(
            &format!("05-waypoint-{name}.yaml"),
            &format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n"
            ),
        )
    }

    /// Starts `mesh-waypoint` for waypoint `name` in `pod` and waits for it
    /// to be ready (xDS received).
    pub fn start_waypoint(&mut self, pod: &str, name: &str) -> anyhow::Result<&MeshWaypoint> {
        let p = self.pod(pod);
        let node = WaypointNode {
            pod_ip: p.ip.into(),
            pod_name: pod.to_string(),
            namespace: self.namespace_of(pod).to_string(),
            waypoint: name.to_string(),
        };
        let spec = WaypointSpec::new(node, pod, std::net::SocketAddr::from((CONTROL_IP, 15010)));
        let netns = p.netns.path();
        let dir = self.dir.join(format!("waypoint-{pod}"));
        let mut wp = MeshWaypoint::start(&self.bins.waypoint, spec, Some(&netns), &dir)?;
        wp.wait_ready(Duration::from_secs(30))?;
        self.waypoints.push(wp);
        Ok(self.waypoints.last().expect("just pushed"))
    }

    /// Starts `mesh-waypoint --role gateway` in `pod` (an ingress gateway:
    /// the Istio `Gateway`s selecting the pod's labels configure it) and
    /// waits for its xDS.
    pub fn start_gateway(&mut self, pod: &str) -> anyhow::Result<&MeshWaypoint> {
        self.start_gateway_with(pod, &[])
    }

    /// [`Cluster::start_gateway`] with more `mesh-waypoint` flags (e.g.
    /// `--credential-dir <dir>`).
    pub fn start_gateway_with(
        &mut self,
        pod: &str,
        extra: &[&str],
    ) -> anyhow::Result<&MeshWaypoint> {
        let p = self.pod(pod);
        let node = WaypointNode {
            pod_ip: p.ip.into(),
            pod_name: pod.to_string(),
            namespace: self.namespace_of(pod).to_string(),
            waypoint: pod.to_string(),
        };
        let mut spec =
            WaypointSpec::new(node, pod, std::net::SocketAddr::from((CONTROL_IP, 15010)));
        spec.gateway = true;
        spec.extra = extra.iter().map(|f| f.to_string()).collect();
        let netns = p.netns.path();
        let dir = self.dir.join(format!("gateway-{pod}"));
        let mut gw = MeshWaypoint::start(&self.bins.waypoint, spec, Some(&netns), &dir)?;
        gw.wait_ready(Duration::from_secs(30))?;
        self.waypoints.push(gw);
        Ok(self.waypoints.last().expect("just pushed"))
    }

    /// The last lines of the log of the gateway or waypoint in `pod`.
    pub fn gateway_log_tail(&self, pod: &str) -> String {
        self.waypoints
            .iter()
            .find(|w| w.spec.node.pod_name == pod)
            .map(MeshWaypoint::log_tail)
            .unwrap_or_else(|| format!("no gateway or waypoint in pod {pod}"))
    }

    /// `podhttp serve` in `pod` on `port`, reporting `version`.
    pub fn serve_http(
        &mut self,
        pod: &str,
        version: &str,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<usize> {
        let port = port.to_string();
        let mut args = vec!["serve", "--port", &port, "--pod", pod, "--version", version];
        args.extend_from_slice(extra);
        let server = Server::start(&self.bins.podhttp, self.pod(pod), &args)
            .with_context(|| format!("podhttp in pod {pod}"))?;
        self.servers.push(server);
        Ok(self.servers.len() - 1)
    }

    /// Service names (`name`, `name.<ns>`, `name.<ns>.svc`,
    /// `name.<ns>.svc.cluster.local`) resolve to their VIPs inside every
    /// pod, for `ip netns exec <pod> curl http://name:port/`.
    /// `services`: (name, namespace, VIP).
    pub fn resolve_services(
        &mut self,
        services: &[(&str, &str, std::net::IpAddr)],
    ) -> anyhow::Result<()> {
        let entries: Vec<(std::net::IpAddr, Vec<String>)> = services
            .iter()
            .map(|(name, ns, ip)| {
                (
                    *ip,
                    vec![
                        name.to_string(),
                        format!("{name}.{ns}"),
                        format!("{name}.{ns}.svc"),
                        format!("{name}.{ns}.svc.cluster.local"),
                    ],
                )
            })
            .collect();
        self.hosts.clear();
        let names: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| p.netns.name.clone()))
            .collect();
        for netns in names {
            self.hosts.push(HostsFile::write(&netns, &entries)?);
        }
        Ok(())
    }

    /// A network namespace outside the cluster (a stand-in for the
    /// internet), plugged into the underlay bridge with address `ip`/24;
    /// the nodes reach it directly. Named `<prefix>-<name>`, so a killed
    /// run's is swept; deleted when the guard drops.
    pub fn add_external(&self, name: &str, ip: Ipv4Addr) -> anyhow::Result<Netns> {
        let ns = Netns::create(&format!("{}-{name}", self.prefix))?;
        let uplink: String = format!("x{name}").chars().take(15).collect();
        crate::cmd::ip(&[
            "link",
            "add",
            &uplink,
            "netns",
            &self.underlay.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.name,
        ])?;
        self.underlay
            .exec(&["link", "set", &uplink, "master", "br-u", "up"])?;
        ns.exec(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        ns.exec(&["link", "set", "eth0", "up"])?;
        Ok(ns)
    }

    /// Real `curl` in `pod` (its cgroup, then `ip netns exec`, so service
    /// names resolve and the connection is captured): (status, body).
    pub fn curl(&self, pod: &str, args: &[&str]) -> anyhow::Result<(u16, String)> {
        let p = self.pod(pod);
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {} curl -sS -m 20 -o - -w '\n%{{http_code}}' \"$@\"",
            p.cgroup.path.display(),
            p.netns.name
        );
        let out = Command::new("sh")
            .args(["-c", &script, "curl"])
            .args(args)
            .output()
            .context("running curl")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let status: u16 = code.trim().parse().unwrap_or(0);
        if status == 0 {
            bail!(
                "curl {} in {pod} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((status, body.to_string()))
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.waypoints.clear();
        self.hosts.clear();
        let nodes: Vec<String> = self.agents.keys().cloned().collect();
        for node in &nodes {
            self.stop_agent(node);
        }
        self.servers.clear();
        self.stop_control();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        self.nodes.clear();
        for node in names {
            let instance = self.instance(&node);
            crate::agent::remove_pins_and_log(
                &PathBuf::from("/sys/fs/bpf").join(&instance),
                &std::env::temp_dir().join(format!("{instance}-agent.log")),
            );
        }
        let control_log = std::env::temp_dir().join(format!("{}-control.log", self.prefix));
        if std::thread::panicking() {
            eprintln!(
                "cluster files kept: {} and {}",
                self.dir.display(),
                control_log.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_file(control_log);
        }
    }
}

/// A waypoint's pod or one opted out of the mesh: never captured (the
/// harness does not enrol it).
fn never_captured(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key("gateway.networking.k8s.io/gateway-name")
        || labels.get("istio.io/dataplane-mode").map(String::as_str) == Some("none")
}

/// Whether something listens on `<pod IP>:15008` inside `pod`'s namespace.
pub fn hbone_listening(pod: &Pod) -> anyhow::Result<bool> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.netns.name, "ss", "-Hltn"])
        .arg(format!("src {}:15008", pod.ip))
        .output()?;
    anyhow::ensure!(out.status.success(), "ss in {}: {out:?}", pod.name);
    Ok(!out.stdout.is_empty())
}
