//! `meshctl` against a running two-node mesh: proxy-status from the control
//! plane, proxy-config from an agent (reached by its node's netns name),
//! bpf from the pinned objects, analyze on the live configuration and on a
//! directory. Needs root.
use std::{path::PathBuf, process::Command, time::Duration};

use mesh_e2e::{bins::Binaries, cluster::Cluster};
use mesh_testkit::eventually;

const TAG: &str = "mct";

const POLICIES: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-a-9081\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: b\n  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n    to:\n    - operation:\n        ports: [\"9081\"]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: selects-nothing\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: ghost\n  rules:\n  - {}\n";

fn meshctl_bin(c: &Cluster) -> PathBuf {
    let bin = c.bins.agent.with_file_name("meshctl");
    assert!(
        bin.exists(),
        "{} not built (cargo xtask test builds it)",
        bin.display()
    );
    bin
}

/// Runs meshctl; (exit success, stdout, stderr).
fn meshctl(c: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(meshctl_bin(c)).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(c: &Cluster, args: &[&str]) -> String {
    let (success, stdout, stderr) = meshctl(c, args);
    assert!(success, "meshctl {args:?} failed: {stderr}\n{stdout}");
    stdout
}

#[test]
fn meshctl_explains_a_running_mesh() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["b"])],
    )
    .unwrap();
    c.write_config("30-authz.yaml", POLICIES).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    c.wait_ready("node2", 2, &["b"]).unwrap();
    c.serve("b", 9080, None).unwrap();
    let to_b = c.pod("b").addr(9080).to_string();
    let echoed = c
        .client("a", &["echo", "--to", &to_b, "--bytes", "4096"])
        .unwrap();
    assert_eq!(echoed["received"], 4096, "{echoed}");
    let control = c.underlay.name.clone();
    let node1 = c.node("node1").netns.name.clone();
    let node2 = c.node("node2").netns.name.clone();

    // proxy-status: both agents, every type SYNCED.
    let status = eventually("both agents SYNCED", Duration::from_secs(15), || {
        let out = ok(&c, &["--control-plane", &control, "proxy-status"]);
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("ztunnel~")).collect();
        if rows.len() == 2 && rows.iter().all(|r| r.matches("SYNCED").count() == 2) {
            Ok(out)
        } else {
            Err(format!("\n{out}"))
        }
    });
    assert!(
        ["node1", "node2"].iter().all(|n| {
            let ip = mesh_e2e::node::NodeNet::bridge_ip(c.node(n).index);
            status.contains(&format!("ztunnel~{ip}~"))
        }),
        "{status}"
    );

    // proxy-config through the node's network namespace.
    let workloads = ok(&c, &["proxy-config", "workload", &node1]);
    for needle in [
        "a",
        "b",
        &c.pod("a").ip.to_string(),
        &c.pod("b").ip.to_string(),
        "HBONE",
    ] {
        assert!(workloads.contains(needle), "no {needle} in:\n{workloads}");
    }
    let policies = ok(&c, &["proxy-config", "policy", &node2, "-o", "json"]);
    let policies: serde_json::Value = serde_json::from_str(&policies).unwrap();
    let names: Vec<&str> = policies
        .as_array()
        .or_else(|| policies["policies"].as_array())
        .unwrap_or_else(|| panic!("no policy list: {policies}"))
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"deny-a-9081"), "{names:?}");
    // The connection just made, as node2's agent recorded it.
    let conns = eventually(
        "an inbound connection listed",
        Duration::from_secs(10),
        || {
            let out = ok(&c, &["proxy-config", "connections", &node2]);
            if out.contains("inbound") {
                Ok(out)
            } else {
                Err(format!("\n{out}"))
            }
        },
    );
    assert!(
        conns.contains(&to_b) && conns.contains("default/a → default/b"),
        "{conns}"
    );
    // node1's kernel refuses a -> b:9081 itself, and says which policy.
    eventually(
        "a kernel entry for deny-a-9081",
        Duration::from_secs(10),
        || {
            let out = ok(&c, &["proxy-config", "policy", &node1]);
            if out.contains("default/deny-a-9081: 1") {
                Ok(())
            } else {
                Err(format!("\n{out}"))
            }
        },
    );
    let certs = ok(&c, &["proxy-config", "certificate", &node1]);
    assert!(
        certs.contains("default/a") || certs.contains("sa/a"),
        "{certs}"
    );

    // bpf: node1's kernel objects, incl. the deny entry compiled for `a`.
    let bpf = ok(&c, &["bpf", "--instance", &c.instance("node1")]);
    for needle in [
        "mesh_connect4",
        "mesh_sockops",
        "enrolled_netns",
        "deny_connect",
    ] {
        assert!(bpf.contains(needle), "no {needle} in:\n{bpf}");
    }
    let bpf_json: serde_json::Value = serde_json::from_str(&ok(
        &c,
        &["bpf", "--instance", &c.instance("node1"), "-o", "json"],
    ))
    .unwrap();
    let text = bpf_json.to_string();
    assert!(text.contains("deny_connect"), "{text}");

    // analyze, live: the policy that selects nothing is reported.
    let live = ok(&c, &["--control-plane", &control, "analyze", "--live"]);
    assert!(
        live.contains("MESH0204") && live.contains("selects-nothing"),
        "{live}"
    );

    // analyze, a directory with an invalid policy: exit 1, field named.
    let dir = std::env::temp_dir().join(format!("{}-analyze", c.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [\"10.0.0.300/8\"]\n",
    )
    .unwrap();
    let (success, stdout, _) = meshctl(&c, &["analyze", dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !success,
        "an invalid policy must fail the analysis:\n{stdout}"
    );
    assert!(
        stdout.contains("Error") && stdout.contains("ipBlocks"),
        "{stdout}"
    );

    // Log levels at runtime, on an agent through its node's namespace.
    let filter = ok(&c, &["log", &node1, "--module", "mesh_agent::policy=debug"]);
    assert!(filter.contains("mesh_agent::policy=debug"), "{filter}");
    let (success, _, stderr) = meshctl(&c, &["log", &node1, "--level", "loud"]);
    assert!(!success && stderr.contains("refused"), "{stderr}");

    // An unreachable target says what to do.
    let (success, _, stderr) = meshctl(&c, &["--control-plane", "127.0.0.1:1", "proxy-status"]);
    assert!(!success);
    assert!(stderr.contains("--control-plane"), "{stderr}");
}

const ROUTING: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  clusterIP: 10.96.0.50\n  selector:\n    app: reviews\n  ports:\n  - name: http\n    port: 9080\n    targetPort: 9080\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews-route\n  namespace: default\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  host: reviews.default.svc.cluster.local\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-ghost\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: reviews\n  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/ghost\"]\n";

/// istioctl's forms: pods as targets (`<pod>[.<ns>]`, resolved through the
/// control plane to the pod's or its node's namespace), `--port` /
/// `--direction` filters, and `x describe pod`.
#[test]
fn meshctl_takes_istioctl_pod_targets() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        "mci",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[
            ("node1", &["reviews-v1"]),
            ("node2", &["client", "waypoint"]),
        ],
    )
    .unwrap();
    c.label_pod("reviews-v1", &[("app", "reviews"), ("version", "v1")])
        .unwrap();
    c.label_namespace("istio.io/use-waypoint", "waypoint")
        .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    c.write_config("10-routing.yaml", ROUTING).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.wait_ready("node1", 3, &["reviews-v1"]).unwrap();
    c.start_waypoint("waypoint", "waypoint").unwrap();
    let control = c.underlay.name.clone();
    let cp = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--control-plane", control.as_str()];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect()
    };
    let run = |args: &[String]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&c, &refs)
    };

    // The waypoint pod's own admin: its outbound clusters of port 9080.
    let names = eventually(
        "the waypoint's reviews clusters",
        Duration::from_secs(20),
        || {
            let out = run(&cp(&[
                "pc",
                "clusters",
                "waypoint",
                "--port",
                "9080",
                "--direction",
                "outbound",
                "-o",
                "json",
            ]));
            let v: serde_json::Value =
                serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
            let mut names: Vec<String> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect();
            names.sort();
            if names.len() == 2 {
                Ok(names)
            } else {
                Err(out)
            }
        },
    );
    assert_eq!(
        names,
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local"
        ]
    );
    let none = run(&cp(&[
        "pc",
        "c",
        "waypoint.default",
        "--port",
        "9999",
        "-o",
        "json",
    ]));
    assert_eq!(none.trim(), "[]", "{none}");

    // The waypoint pod answers for its own certificates (istioctl's
    // `pc secret <waypoint>`): its SPIFFE chain and the mesh root.
    let table = run(&cp(&["pc", "secret", "waypoint.default"]));
    for want in [
        "RESOURCE NAME",
        "Cert Chain",
        "ROOTCA",
        "default: spiffe://cluster.local/ns/default/sa/waypoint",
    ] {
        assert!(table.contains(want), "{want:?} missing:\n{table}");
    }
    let secrets: serde_json::Value =
        serde_json::from_str(&run(&cp(&["pc", "secret", "waypoint", "-o", "json"]))).unwrap();
    let of_type = |t: &str| {
        secrets
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} secret in {secrets}"))
    };
    let chain = of_type("workload");
    assert_eq!(
        chain["identity"], "spiffe://cluster.local/ns/default/sa/waypoint",
        "{chain}"
    );
    let serial = chain["serial"].as_str().unwrap_or_default();
    assert!(
        !serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit()),
        "{chain}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (not_before, not_after) = (
        chain["not_before_unix"].as_i64().unwrap(),
        chain["not_after_unix"].as_i64().unwrap(),
    );
    assert!(not_before <= now && now < not_after, "{chain}");
    assert_eq!(chain["valid"], true, "{chain}");
    // The root the mesh CA signs with is the leaf's issuer.
    let root = of_type("root");
    assert_eq!(root["name"], "ROOTCA", "{root}");
    assert_eq!(root["subject"], chain["chain"][0]["issuer"], "{secrets}");
    assert!(!secrets.to_string().contains("PRIVATE KEY"), "{secrets}");
    let yaml = run(&cp(&["pc", "secret", "waypoint", "-o", "yaml"]));
    assert!(yaml.contains("name: ROOTCA"), "{yaml}");

    // An ordinary pod: its node's agent, its own certificate only.
    let secret = run(&cp(&["pc", "secret", "reviews-v1.default"]));
    assert!(
        secret.contains("cluster.local/ns/default/sa/reviews-v1"),
        "{secret}"
    );
    let yaml = run(&cp(&["pc", "w", "reviews-v1.default", "-o", "yaml"]));
    assert!(yaml.contains("name: reviews-v1"), "{yaml}");
    assert!(!yaml.contains("name: client"), "{yaml}");

    let ghost = cp(&["pc", "secret", "ghost.default"]);
    let ghost: Vec<&str> = ghost.iter().map(String::as_str).collect();
    let (success, _, stderr) = meshctl(&c, &ghost);
    assert!(!success);
    assert!(stderr.contains("no pod ghost.default"), "{stderr}");

    // describe: the Service, VirtualService, DestinationRule, policy.
    let text = run(&cp(&["x", "describe", "pod", "reviews-v1"]));
    for want in [
        "Pod: reviews-v1.default",
        "Service: reviews.default",
        "Waypoint: default/waypoint",
        "VirtualService: default/reviews-route",
        "DestinationRule: default/reviews",
        "AuthorizationPolicy: default/deny-ghost  DENY",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&run(&cp(&[
        "experimental",
        "describe",
        "pod",
        "reviews-v1",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["services"][0]["name"], "reviews");
}
