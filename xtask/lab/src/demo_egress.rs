//! The bookinfo demo's egress: `external`, a network namespace outside the
//! mesh on the underlay (a stand-in for the internet), runs `dnsmasq`
//! answering [`HOST`] with its own address and `podhttp` on port 80. The
//! ServiceEntry of `xtask/lab/demo/bookinfo/50-egress.yaml` makes the host
//! a mesh Service with an auto-allocated VIP; the agents resolve it through
//! that dnsmasq (`--dns-upstream`). Every pod's `resolv.conf` names dnsmasq
//! as its resolver, so `ip netns exec sleep curl http://<HOST>/` sends its
//! DNS query there; the kernel hands it to the node's agent, which answers
//! the VIP, and the connection to the VIP goes out through the agent.
use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use mesh_e2e::{cluster::Cluster, dnsmasq::Dnsmasq, netns::Netns};
use mesh_testkit::try_eventually;

/// The ServiceEntry's host; no real DNS knows it.
pub const HOST: &str = "httpbin.external.demo";
/// The external namespace's address on the underlay (dnsmasq and the
/// HTTP server).
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
/// The pod name the external HTTP server reports.
const SERVER_NAME: &str = "httpbin";

/// The agents' resolver for DNS endpoints.
pub fn agent_args() -> [String; 2] {
    ["--dns-upstream".into(), format!("{EXTERNAL_IP}:53")]
}

/// A process in the external namespace; killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        mesh_e2e::cmd::terminate(&mut self.0);
    }
}

/// The external namespace and its two servers; dropping it stops both and
/// deletes the namespace. Field order is teardown order.
pub struct External {
    _http: Process,
    _dns: Dnsmasq,
    _netns: Netns,
}

/// Creates the external namespace, starts dnsmasq and the HTTP server in
/// it, and waits until both answer.
pub fn start(c: &Cluster) -> anyhow::Result<External> {
    let netns = c.add_external("external", EXTERNAL_IP)?;
    let args = [
        format!("--address=/{HOST}/{EXTERNAL_IP}"),
        "--local-ttl=30".to_string(),
    ];
    let dns = Dnsmasq::start(&netns.name, EXTERNAL_IP, &args)?;
    let http = Process(
        Command::new(&c.bins.podhttp)
            .arg("--netns")
            .arg(netns.path())
            .args(["serve", "--port", "80", "--pod", SERVER_NAME])
            .args(["--version", "external"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting podhttp in the external namespace")?,
    );
    let path = netns.path();
    try_eventually(
        "the external HTTP server listening",
        Duration::from_secs(10),
        || {
            mesh_e2e::netns::connect_in(
                &path,
                SocketAddr::from((EXTERNAL_IP, 80)),
                Duration::from_millis(200),
            )
            .map_err(|e| e.to_string())
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = mesh_e2e::netns::bind_udp_in(&path, SocketAddr::from(([0, 0, 0, 0], 0)))?;
    socket.set_read_timeout(Some(Duration::from_millis(300)))?;
    try_eventually("dnsmasq answering", Duration::from_secs(10), || {
        socket
            .send_to(&a_query(HOST), SocketAddr::from((EXTERNAL_IP, 53)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        socket.recv(&mut buf).map_err(|e| e.to_string())
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(External {
        _http: http,
        _dns: dns,
        _netns: netns,
    })
}

/// A DNS query for `name`'s A records (id 0x4d44, recursion desired).
fn a_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x4d, 0x44, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap_or(63));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Every pod's resolver is the external dnsmasq (`ip netns exec` mounts
/// `/etc/netns/<pod>/resolv.conf`; it goes with the pods' hosts files), so
/// a name that is in no hosts file is asked over DNS: an enrolled pod's
/// query is answered by its node's agent.
pub fn write_resolv_conf(c: &Cluster) -> anyhow::Result<()> {
    for pod in c.nodes.iter().flat_map(|n| n.pods.iter()) {
        let dir = std::path::Path::new("/etc/netns").join(&pod.netns.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("resolv.conf");
        std::fs::write(&file, format!("nameserver {EXTERNAL_IP}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}
