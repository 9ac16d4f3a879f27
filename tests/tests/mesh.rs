//! Secure L4 mesh end to end: two nodes (network namespaces with their own
//! agent and pods), one control plane (`mesh-control`, local YAML
//! directory), HBONE over mTLS between the nodes. Needs root.
use std::time::{Duration, Instant};

use mesh_e2e::{
    bins::Binaries,
    capture::{contains, Capture},
    cluster::Cluster,
};
use serde_json::Value;

const ECHO: u16 = 9080;
const TAG: &str = "mtm";

fn cluster(nodes: &[(&str, &[&str])]) -> Cluster {
    mesh_e2e::require_root();
    Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        nodes,
    )
    .unwrap()
}

fn spiffe(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
}

/// Waits (bounded) until `node`'s agent is connected to the control plane,
/// knows `workloads` and holds certificates for its own `identities`.
fn wait_mesh_ready(c: &Cluster, node: &str, workloads: usize, identities: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mesh = c.agent(node).mesh();
        if let Ok(m) = &mesh {
            let certs: Vec<&str> = m["certificates"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["identity"].as_str()).collect())
                .unwrap_or_default();
            let known = m["workloads"].as_array().map_or(0, Vec::len);
            if m["xds_connected"] == true
                && known >= workloads
                && identities
                    .iter()
                    .all(|id| certs.contains(&spiffe(id).as_str()))
            {
                return m.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "agent on {node} not ready: {mesh:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn echo(c: &Cluster, pod: &str, to: &str, bytes: u64, extra: &[&str]) -> Value {
    let mut args = vec!["echo", "--to", to];
    let bytes = bytes.to_string();
    args.extend(["--bytes", &bytes]);
    args.extend_from_slice(extra);
    let out = c.client(pod, &args).unwrap();
    assert_eq!(out["received"], out["sent"], "{out}");
    assert_eq!(
        out["sent_sha256"], out["received_sha256"],
        "altered in transit: {out}"
    );
    out
}

#[test]
fn cross_node_traffic_is_hbone_mtls_with_spiffe_identities() {
    let mut c = cluster(&[("node1", &["a"]), ("node2", &["b"])]);
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve("b", ECHO, None).unwrap();
    wait_mesh_ready(&c, "node1", 2, &["a"]);
    wait_mesh_ready(&c, "node2", 2, &["b"]);

    let pcap_file = std::env::temp_dir().join(format!("{}-underlay.pcap", c.prefix));
    let wire = Capture::start(&c.underlay.path(), "br-u", pcap_file).unwrap();
    let marker = "PLAINTEXT-MARKER-4f1c";
    let dst = c.pod("b").addr(ECHO).to_string();
    let out = echo(&c, "a", &dst, 4 << 20, &["--pattern", marker]);
    let pcap = wire.finish().unwrap();

    assert!(
        pcap.len() > 4 << 20,
        "capture saw too little: {} bytes",
        pcap.len()
    );
    assert!(
        !contains(&pcap, marker.as_bytes()),
        "plaintext payload crossed the node link"
    );
    let outbound = c
        .agent("node1")
        .finished_connection(out["local"].as_str().unwrap())
        .unwrap();
    assert_eq!(outbound["route"], "hbone", "{outbound}");
    assert_eq!(outbound["source_identity"], spiffe("a"));
    assert_eq!(outbound["destination_identity"], spiffe("b"));
    let inbound = c.agent("node2").connections().unwrap();
    let seen = inbound["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["direction"] == "inbound");
    let seen = seen.unwrap_or_else(|| panic!("node2 saw no inbound HBONE: {inbound}"));
    assert_eq!(seen["source_identity"], spiffe("a"), "{seen}");
    assert_eq!(seen["destination_identity"], spiffe("b"), "{seen}");
    assert_eq!(seen["bytes_sent"], 4u64 << 20, "{seen}");
}
