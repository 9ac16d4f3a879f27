//! One pod cannot evict another pod's original destinations: a burst of
//! captured connections that never complete leaves nothing behind in any
//! map shared between pods, so a concurrent connection of another pod is
//! still recovered by the agent.
use std::time::Duration;

use mesh_e2e::{bins::Binaries, pysock, topology::NODE_IP, Topology};
use mesh_testkit::eventually;

const ECHO: u16 = 9080;
const TAG: &str = "mof";
/// Twice the capacity the original-destination maps ever had (65 536).
const BURST: u32 = 2 * 65_536;

fn topology(pods: &[&str]) -> Topology {
    mesh_e2e::require_root();
    Topology::new(TAG, Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")), pods).unwrap()
}

/// MAC address of the node bridge (the pods' gateway, the agent's address).
fn bridge_mac(topo: &Topology) -> String {
    let out = topo
        .node
        .netns
        .exec(&["-j", "link", "show", "br0"])
        .unwrap();
    let links: serde_json::Value = serde_json::from_str(&out).unwrap();
    links[0]["address"].as_str().unwrap().to_string()
}

/// Points `pod`'s neighbour entry for the node address at `mac`: with a
/// wrong one its SYNs go nowhere (and are retransmitted), with the right one
/// they arrive.
fn gateway_mac(topo: &Topology, pod: &str, mac: &str) {
    let node = NODE_IP.to_string();
    topo.pod(pod)
        .netns
        .exec(&[
            "neigh",
            "replace",
            &node,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .unwrap();
}

#[test]
fn a_burst_of_half_open_connections_does_not_evict_another_pods_original_destination() {
    let mut topo = topology(&["victim", "flooder", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("victim"), &[]).unwrap();
    topo.agent().enroll(topo.pod("flooder"), &[]).unwrap();
    let dst = topo.pod("b").addr(ECHO);

    // The victim's connect() is captured, but its SYN stays unanswered
    // until the burst is over, so its original destination waits in the
    // kernel the whole time.
    gateway_mac(&topo, "victim", "02:00:00:00:00:01");
    let victim = std::process::Command::new(&topo.bins.podctl)
        .arg("--netns")
        .arg(topo.pod("victim").netns.path())
        .arg("--cgroup")
        .arg(&topo.pod("victim").cgroup.path)
        .args([
            "connect",
            "--to",
            &dst.to_string(),
            "--timeout-ms",
            "120000",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let victim = KillOnDrop(Some(victim));
    eventually(
        "the victim's connect() is captured",
        Duration::from_secs(10),
        || topo.agent().kernel_counter("redirected").unwrap() >= 1,
    );

    // The flooder's SYNs go nowhere either: every one of its connections
    // stays half open until its socket is closed.
    gateway_mac(&topo, "flooder", "02:00:00:00:00:01");
    let burst = pysock::half_open_burst(topo.pod("flooder"), dst, BURST).unwrap();
    assert_eq!(burst["started"], BURST, "{burst}");

    // Let the victim's retransmitted SYN through.
    gateway_mac(&topo, "victim", &bridge_mac(&topo));
    let out = victim.wait_output();
    assert!(
        out.status.success(),
        "the victim's connection failed: {out:?}"
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    let record = topo
        .agent()
        .finished_connection(result["local"].as_str().unwrap())
        .unwrap();
    assert_eq!(record["original_destination"], dst.to_string(), "{record}");
}

/// The victim's client, killed if the test fails before it finishes.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn wait_output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
