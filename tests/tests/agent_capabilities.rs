//! The node agent works with exactly the capabilities its DaemonSet grants
//! (`deploy/base/mesh-agent.yaml`: `drop: [ALL]`, the `add` list,
//! `allowPrivilegeEscalation: false`), and each capability is needed: the
//! agent and its CLI run under `setpriv` with that bounding set (a root
//! process's capabilities are its bounding set) and no_new_privs, in a
//! real topology with real eBPF, and proxy an enrolled pod's traffic; with
//! `SYS_ADMIN` removed the programs do not load (and with BPF + PERFMON in
//! its place enrolment still fails), with `NET_ADMIN` removed proxying
//! does. Needs root.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use mesh_e2e::{bins::Binaries, topology::NODE_IP, Agent, Topology};
use serde::Deserialize as _;
use serde_json::Value;

const ECHO: u16 = 9080;

/// The agent container's added capabilities and whether it may gain
/// privileges, as the DaemonSet declares them.
fn daemonset_capabilities() -> (Vec<String>, bool) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/mesh-agent.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let ds = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|o| o["kind"] == "DaemonSet")
        .expect("a DaemonSet in deploy/base/mesh-agent.yaml");
    let agent = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mesh-agent")
        .expect("container mesh-agent");
    let sc = &agent["securityContext"];
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let add = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (add, sc["allowPrivilegeEscalation"] == false)
}

/// A script that runs the real agent binary with only `caps`; removed on drop.
struct CappedAgent {
    dir: PathBuf,
    script: PathBuf,
}

impl CappedAgent {
    fn new(tag: &str, agent: &Path, caps: &[String], no_new_privs: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("{tag}-{}-capped", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("mesh-agent");
        let bounding: String = caps
            .iter()
            .map(|c| format!(",+{}", c.to_lowercase()))
            .collect();
        let nnp = if no_new_privs { " --no-new-privs" } else { "" };
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec setpriv --bounding-set -all{bounding}{nnp} -- {} \"$@\"\n",
                agent.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        CappedAgent { dir, script }
    }
}

impl Drop for CappedAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A two-pod topology whose agent (daemon and CLI) runs with `caps`.
fn capped_topology(tag: &str, caps: &[String], nnp: bool) -> (Topology, CappedAgent) {
    mesh_e2e::require_root();
    let topo = Topology::new(
        tag,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &["a", "b"],
    )
    .unwrap();
    let capped = CappedAgent::new(tag, &topo.bins.agent, caps, nnp);
    (topo, capped)
}

fn start(topo: &mut Topology, capped: &CappedAgent) -> anyhow::Result<()> {
    let mut spec = topo.agent_spec();
    spec.bin = capped.script.clone();
    topo.agent = Some(Agent::start(spec)?);
    Ok(())
}

fn without(caps: &[String], cap: &str) -> Vec<String> {
    assert!(caps.iter().any(|c| c == cap), "{cap} not in {caps:?}");
    caps.iter().filter(|c| *c != cap).cloned().collect()
}

#[test]
fn agent_works_with_exactly_the_daemonset_capabilities() {
    let (caps, nnp) = daemonset_capabilities();
    let (mut topo, capped) = capped_topology("mcapok", &caps, nnp);
    start(&mut topo, &capped).unwrap();
    // Really capped: the daemon's effective set is the DaemonSet's.
    let pid = topo.agent().pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    let eff = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(
        eff.count_ones() as usize,
        caps.len(),
        "CapEff {eff:x} vs {caps:?}"
    );
    let nnp_line = status
        .lines()
        .find(|l| l.starts_with("NoNewPrivs:"))
        .unwrap();
    assert_eq!(nnp_line.ends_with('1'), nnp);

    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let out = topo
        .client(
            "a",
            &[
                "echo",
                "--to",
                &topo.pod("b").addr(ECHO).to_string(),
                "--bytes",
                "1048576",
            ],
        )
        .unwrap();
    assert_eq!(out["received"], 1_048_576, "{out}");
    assert_eq!(out["sent_sha256"], out["received_sha256"]);
    // Proxied by the capped agent: the server saw the node's address.
    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert!(peers[0].starts_with(&format!("{NODE_IP}:")), "{peers:?}");
}

#[test]
fn without_sys_admin_the_programs_do_not_load() {
    // bpf() itself needs CAP_BPF or CAP_SYS_ADMIN.
    let (caps, nnp) = daemonset_capabilities();
    let (mut topo, capped) = capped_topology("mcapsa", &without(&caps, "SYS_ADMIN"), nnp);
    let err = start(&mut topo, &capped).unwrap_err();
    assert!(
        format!("{err:#}").contains("installing the capture programs"),
        "{err:#}"
    );
}

#[test]
fn with_perfmon_instead_of_sys_admin_enrolment_still_fails() {
    // The narrowest set that loads the programs without SYS_ADMIN: BPF for
    // bpf(), PERFMON for the verifier (without it, its Spectre hardening
    // rejects our pointer arithmetic: "prohibited for !root"). Entering a
    // pod's network namespace (setns) still needs CAP_SYS_ADMIN itself.
    let (caps, nnp) = daemonset_capabilities();
    let mut caps = without(&caps, "SYS_ADMIN");
    caps.extend(["BPF".into(), "PERFMON".into()]);
    let (mut topo, capped) = capped_topology("mcappm", &caps, nnp);
    start(&mut topo, &capped).unwrap();
    let err = topo.agent().enroll(topo.pod("a"), &[]).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot enter network namespace"),
        "{err:#}"
    );
}

#[test]
fn without_net_admin_the_agent_cannot_proxy() {
    let (caps, nnp) = daemonset_capabilities();
    let (mut topo, capped) = capped_topology("mcapna", &without(&caps, "NET_ADMIN"), nnp);
    start(&mut topo, &capped).unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let to = topo.pod("b").addr(ECHO).to_string();
    let result = topo.client("a", &["echo", "--to", &to, "--bytes", "1024"]);
    assert!(
        result.as_ref().map_or(true, |out| out["received"] != 1024),
        "the echo passed without NET_ADMIN: {result:?}"
    );
    // The agent's upstream socket carries SO_MARK (the capture bypass),
    // which needs CAP_NET_ADMIN.
    let log = topo.agent().log_tail();
    assert!(
        log.contains("upstream connect failed") && log.contains("Operation not permitted"),
        "{log}"
    );
}
