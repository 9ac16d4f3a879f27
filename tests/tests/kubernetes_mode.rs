//! The mesh in Kubernetes mode on one machine: mesh-control reads the
//! cluster's objects from the fake API server (`--source kubernetes`, the
//! same YAML the directory source would read) and checks callers with
//! TokenReview (`--authenticate kubernetes`); the node agents prove who
//! they are with ServiceAccount token files (`--token-file`), as the
//! DaemonSet's projected token does. A node agent gets certificates only
//! for the pods of its own node: with another node's token it gets none
//! and its pod cannot reach the mesh; with its own, cross-node HBONE works.
//! Needs root.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mesh_e2e::{
    bins::Binaries,
    cluster::{Cluster, CONTROL_IP},
    fake_apiserver::FakeApiServer,
};
use mesh_testkit::eventually;

const TAG: &str = "kbm";
const ECHO: u16 = 9080;
const AGENT_SA: &str = "system:serviceaccount:istio-system:mesh-agent";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";

fn token_file(c: &Cluster, name: &str, token: &str) -> PathBuf {
    let path = c.dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// Every YAML file of the cluster's config directory, loaded into the fake
/// in the directory source's order.
fn load_config_dir(fake: &FakeApiServer, dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let n = fake.load_yaml(&text).unwrap();
        assert!(n > 0, "{}: nothing loaded", file.display());
    }
}

#[test]
fn node_agents_get_certificates_for_their_own_nodes_pods_only() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["b"])],
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt
        .block_on(FakeApiServer::start_in(
            &c.underlay.path(),
            CONTROL_IP.into(),
        ))
        .unwrap();
    load_config_dir(&fake, &c.config_dir());
    fake.add_token("agent-node1", AGENT_SA, &[(NODE_NAME, "node1")]);
    fake.add_token("agent-node2", AGENT_SA, &[(NODE_NAME, "node2")]);
    let kubeconfig = fake.kubeconfig(&c.dir).unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    c.start_control(&[
        "--source",
        "kubernetes",
        "--kubeconfig",
        &kubeconfig,
        "--authenticate",
        "kubernetes",
    ])
    .unwrap();

    // node1's agent holding node2's token: the CA refuses pod a's identity
    // (a runs on node1), naming both identities.
    let wrong = token_file(&c, "token-wrong", "agent-node2")
        .display()
        .to_string();
    c.start_agent("node1", &["--token-file", &wrong]).unwrap();
    let log = c.control.as_ref().unwrap().log.clone();
    let want_a = "spiffe://cluster.local/ns/default/sa/a";
    eventually(
        "the CA refuses a's identity to node2's agent",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log).is_ok_and(|text| {
                text.lines()
                    .any(|l| l.contains("WARN") && l.contains(want_a) && l.contains("node2"))
            })
        },
    );
    let mesh = c.agent("node1").mesh().unwrap();
    let certs = mesh["certificates"].to_string();
    assert!(
        !certs.contains(want_a),
        "a's certificate issued anyway: {certs}"
    );
    c.stop_agent("node1");

    // The right tokens: each agent gets its own pod's certificate, and a
    // talks to b across the nodes over HBONE.
    let t1 = token_file(&c, "token-node1", "agent-node1")
        .display()
        .to_string();
    let t2 = token_file(&c, "token-node2", "agent-node2")
        .display()
        .to_string();
    c.start_agent("node1", &["--token-file", &t1]).unwrap();
    c.start_agent("node2", &["--token-file", &t2]).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    c.wait_ready("node2", 2, &["b"]).unwrap();
    let dst = c.pod("b").addr(ECHO).to_string();
    let out = c
        .client("a", &["echo", "--to", &dst, "--bytes", "65536"])
        .unwrap();
    assert_eq!(out["received"], out["sent"], "{out}");
    let conn = c
        .agent("node1")
        .finished_connection(out["local"].as_str().unwrap())
        .unwrap();
    assert_eq!(conn["route"], "hbone", "{conn}");
    assert_eq!(conn["source_identity"], want_a, "{conn}");
    // Node2's agent may not hold a's identity even though it asked for
    // nothing on a's behalf: only its own pod's.
    let node2 = c.agent("node2").mesh().unwrap();
    assert!(
        !node2["certificates"].to_string().contains(want_a),
        "{node2}"
    );
    drop(c);
    drop(fake);
}
