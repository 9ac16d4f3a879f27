//! The uninstall path of docs/kubernetes.md, with the privileges the
//! cleanup DaemonSet gives it (`deploy/cleanup/standard/mesh-cleanup.yaml`,
//! init container `uninstall-ebpf`: root, `drop: [ALL]`, nothing added,
//! no_new_privs): after the agent is gone, its command leaves no pin, no
//! program, no map on the node, and a previously enrolled pod talks
//! directly again. Needs root.
use std::{path::Path, time::Duration};

use mesh_e2e::{bins::Binaries, bpftool, topology::NODE_IP, Topology};
use mesh_testkit::eventually;
use serde::Deserialize as _;
use serde_json::Value;

const ECHO: u16 = 9080;

/// Command and security context of the cleanup's eBPF step.
fn cleanup_step() -> (Vec<String>, Value) {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cleanup/standard/mesh-cleanup.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let ds = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|o| o["kind"] == "DaemonSet")
        .expect("the cleanup DaemonSet");
    let step = ds["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "uninstall-ebpf")
        .expect("init container uninstall-ebpf")
        .clone();
    let command = step["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (command, step["securityContext"].clone())
}

/// Where the server saw the echo from.
/// The peer the echo server saw for the `nth` (1-based) connection, once
/// it has reported that many: its output arrives asynchronously, so the
/// last peer seen before that could be an earlier connection's.
fn echo_peer(topo: &Topology, server: usize, nth: usize) -> String {
    let to = topo.pod("b").addr(ECHO).to_string();
    let out = topo
        .client("a", &["echo", "--to", &to, "--bytes", "4096"])
        .unwrap();
    assert_eq!(out["received"], 4096, "{out}");
    let peers = topo.servers[server].accepted_peers(ECHO, nth);
    assert_eq!(peers.len(), nth, "connections seen: {peers:?}");
    peers[nth - 1].clone()
}

fn exists(kind: &str, id: u32) -> bool {
    mesh_e2e::cmd::run("bpftool", &[kind, "show", "id", &id.to_string()]).is_ok()
}

#[test]
fn cleanup_step_removes_every_kernel_object_with_no_capability() {
    mesh_e2e::require_root();
    let (command, sc) = cleanup_step();
    assert_eq!(command, ["mesh-agent", "uninstall"]);
    assert_eq!(sc["runAsUser"], 0);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(sc["capabilities"].get("add").is_none());
    let nnp = sc["allowPrivilegeEscalation"] == false;

    let mut topo = Topology::new(
        "mclean",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &["a", "b"],
    )
    .unwrap();
    topo.start_agent().unwrap();
    let server = topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let peer = echo_peer(&topo, server, 1);
    assert!(
        peer.starts_with(&format!("{NODE_IP}:")),
        "not captured: {peer}"
    );

    let progs: Vec<u32> = bpftool::cgroup_programs(topo.cgroup_root())
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert!(progs.len() >= 3, "{progs:?}");
    let mut maps = Vec::new();
    for id in &progs {
        let out =
            mesh_e2e::cmd::run("bpftool", &["-j", "prog", "show", "id", &id.to_string()]).unwrap();
        let prog: Value = serde_json::from_str(&out).unwrap();
        maps.extend(
            prog["map_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m.as_u64().unwrap() as u32),
        );
    }
    assert!(!maps.is_empty());

    // docs/kubernetes.md "Uninstall": the agent goes first, then the step.
    topo.stop_agent();
    let mut setpriv = std::process::Command::new("setpriv");
    setpriv.args(["--bounding-set", "-all"]);
    if nnp {
        setpriv.arg("--no-new-privs");
    }
    let out = setpriv
        .arg("--")
        .arg(&topo.bins.agent)
        .args(["--instance", &topo.prefix])
        .args(&command[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        !topo.pin_dir().exists(),
        "pins left: {}",
        topo.pin_dir().display()
    );
    assert_eq!(
        bpftool::cgroup_programs(topo.cgroup_root()).unwrap(),
        vec![]
    );
    // The kernel frees unreferenced programs and maps asynchronously.
    eventually(
        "the agent's programs and maps freed",
        Duration::from_secs(10),
        || {
            let left: Vec<String> = progs
                .iter()
                .filter(|id| exists("prog", **id))
                .map(|id| format!("prog {id}"))
                .chain(
                    maps.iter()
                        .filter(|id| exists("map", **id))
                        .map(|id| format!("map {id}")),
                )
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still in the kernel: {left:?}"))
            }
        },
    );
    // The pod that was enrolled now talks directly.
    let peer = echo_peer(&topo, server, 2);
    assert!(
        peer.starts_with(&format!("{}:", topo.pod("a").ip)),
        "still proxied: {peer}"
    );
}
