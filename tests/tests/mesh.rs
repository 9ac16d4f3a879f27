//! Secure L4 mesh end to end: two nodes (network namespaces with their own
//! agent and pods), one control plane (`mesh-control`, local YAML
//! directory), HBONE over mTLS between the nodes. Needs root.
use std::time::Duration;

use mesh_e2e::{
    bins::Binaries,
    capture::{contains, Capture},
    cluster::Cluster,
};
use mesh_testkit::eventually;
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

fn wait_mesh_ready(c: &Cluster, node: &str, workloads: usize, identities: &[&str]) -> Value {
    c.wait_ready(node, workloads, identities).unwrap()
}

/// The common two-node set-up: control plane, both agents (with
/// `agent_args`), an echo server in `b`, both agents ready. Returns node1's
/// `/stats/mesh`.
fn start_a_to_b(c: &mut Cluster, agent_args: &[&str]) -> Value {
    c.start_control(&[]).unwrap();
    c.start_agent("node1", agent_args).unwrap();
    c.start_agent("node2", agent_args).unwrap();
    c.serve("b", ECHO, None).unwrap();
    let node1 = wait_mesh_ready(c, "node1", 2, &["a"]);
    wait_mesh_ready(c, "node2", 2, &["b"]);
    node1
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
    start_a_to_b(&mut c, &[]);

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

#[test]
fn service_vip_spreads_over_endpoints_on_both_nodes() {
    let mut c = cluster(&[("node1", &["a", "web1"]), ("node2", &["web2"])]);
    c.write_config(
        "10-service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: 10.96.0.10\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 9080\n",
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve("web1", ECHO, None).unwrap();
    c.serve("web2", ECHO, None).unwrap();
    wait_mesh_ready(&c, "node1", 3, &["a", "web1"]);
    wait_mesh_ready(&c, "node2", 3, &["web2"]);

    for _ in 0..10 {
        echo(&c, "a", "10.96.0.10:80", 4096, &[]);
    }
    let local = c.servers[0].accepted_peers(ECHO, 1).len();
    let remote = c.servers[1].accepted_peers(ECHO, 1).len();
    assert_eq!(local + remote, 10);
    assert!(
        local >= 3 && remote >= 3,
        "VIP not spread: web1 {local}, web2 {remote}"
    );
    let recent = c.agent("node1").connections().unwrap();
    let routes: Vec<&str> = recent["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["route"].as_str())
        .collect();
    assert!(
        routes.contains(&"hbone") && routes.contains(&"local"),
        "{routes:?}"
    );
}

const STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n";
const PERMISSIVE: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: PERMISSIVE\n";

fn wait_strict(c: &Cluster, node: &str, want: bool) {
    let what = format!("strict pods on {node} present: {want}");
    eventually(&what, Duration::from_secs(20), || {
        let capture = c.agent(node).capture().unwrap();
        let strict = capture["strict_pods"].as_array().map_or(0, Vec::len);
        if (strict > 0) == want {
            Ok(())
        } else {
            Err(capture)
        }
    });
}

#[test]
fn strict_refuses_plaintext_while_permissive_accepts_it() {
    let mut c = cluster(&[("node1", &["a"]), ("node2", &["b", "legacy"])]);
    c.write_config("20-peerauth.yaml", PERMISSIVE).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    // `legacy` keeps its traffic off the mesh: a plaintext client.
    c.agent("node2").unenroll(c.pod("legacy")).unwrap();
    c.serve("b", ECHO, None).unwrap();
    wait_mesh_ready(&c, "node1", 3, &["a"]);
    wait_mesh_ready(&c, "node2", 3, &["b"]);
    let dst = c.pod("b").addr(ECHO).to_string();
    let connect = |pod: &str| {
        c.client(pod, &["connect", "--to", &dst, "--timeout-ms", "2000"])
            .unwrap()
    };

    assert_eq!(
        connect("legacy")["ok"],
        true,
        "PERMISSIVE must accept plaintext"
    );

    c.write_config("20-peerauth.yaml", STRICT).unwrap();
    wait_strict(&c, "node2", true);
    let refused = connect("legacy");
    assert_eq!(
        refused["ok"], false,
        "STRICT must refuse plaintext: {refused}"
    );
    echo(&c, "a", &dst, 64 << 10, &[]); // mTLS still gets through
    let denied = c
        .agent("node2")
        .kernel_counter("denied_plaintext_strict")
        .unwrap();
    assert!(denied >= 1, "no plaintext attempt counted as denied");

    c.write_config("20-peerauth.yaml", PERMISSIVE).unwrap();
    wait_strict(&c, "node2", false);
    assert_eq!(
        connect("legacy")["ok"],
        true,
        "back to PERMISSIVE must accept plaintext"
    );
}

#[test]
fn control_plane_restart_and_bad_yaml_leave_traffic_flowing() {
    let mut c = cluster(&[("node1", &["a"]), ("node2", &["b"])]);
    c.xds_tls = true; // xDS and CA over TLS (15012), verified with the mesh root
    start_a_to_b(&mut c, &[]);
    let dst = c.pod("b").addr(ECHO).to_string();

    // A transfer that spans the control plane's restart.
    let mut control = c.control.take().unwrap();
    let long = std::thread::scope(|s| {
        let running = s.spawn(|| {
            echo(&c, "a", &dst, 1 << 20, &["--chunk-delay-ms", "150"]) // ~2.4 s
        });
        // Stop the control plane once the transfer is under way.
        eventually(
            "the transfer open at node1's agent",
            Duration::from_secs(10),
            || {
                let conns = c.agent("node1").connections().unwrap();
                if conns["active"].as_array().is_some_and(|a| !a.is_empty()) {
                    Ok(())
                } else {
                    Err(conns)
                }
            },
        );
        control.stop();
        // While it is down: new connections still work on the last state.
        echo(&c, "a", &dst, 64 << 10, &[]);
        running.join().unwrap()
    });
    assert_eq!(long["received"], 1u64 << 20);
    c.start_control(&[]).unwrap();
    wait_mesh_ready(&c, "node1", 2, &["a"]);
    wait_mesh_ready(&c, "node2", 2, &["b"]);

    // A malformed file is rejected; the last good state keeps serving.
    c.write_config(
        "30-bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\n  namespace: default\nspec:\n  nodeName: node1\nstatus:\n  podIP: not-an-ip\n",
    )
    .unwrap();
    let log = c.control.as_ref().unwrap().log.clone();
    eventually(
        "an error naming the file and field",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("30-bad.yaml") && text.contains("podIP") {
                Ok(())
            } else {
                Err(format!("log:\n{text}"))
            }
        },
    );
    echo(&c, "a", &dst, 256 << 10, &[]);
    let mesh = wait_mesh_ready(&c, "node1", 2, &["a"]);
    let names: Vec<&str> = mesh["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["uid"].as_str())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("broken")),
        "bad resource was served: {names:?}"
    );
}

#[test]
fn certificate_rotation_keeps_a_long_transfer_alive() {
    let mut c = cluster(&[("node1", &["a"]), ("node2", &["b"])]);
    let before = start_a_to_b(&mut c, &["--cert-ttl", "10s"]);
    let first_serial = before["certificates"][0]["serial"].clone();

    // ~13 s: longer than the certificate lifetime, renewed at half-life.
    let out = echo(
        &c,
        "a",
        &c.pod("b").addr(ECHO).to_string(),
        2 << 20,
        &["--chunk-delay-ms", "400"],
    );
    assert_eq!(out["received"], 2u64 << 20);
    let after = c.agent("node1").mesh().unwrap();
    assert!(
        after["certificates_issued"].as_u64().unwrap() >= 2,
        "never renewed: {after}"
    );
    assert_ne!(after["certificates"][0]["serial"], first_serial, "{after}");
    // New connections use the renewed certificate.
    echo(&c, "a", &c.pod("b").addr(ECHO).to_string(), 64 << 10, &[]);
}
