//! L4 AuthorizationPolicy end to end: Istio YAML in the control plane's
//! directory, enforced by the agents, observed from pods. Two nodes: `a` on
//! node1 reaches `b` on node2 over HBONE (enforced by node2's inbound side,
//! or by node1's kernel for DENYs it can compile); `c` on node2 reaches `b`
//! by same-node delivery (enforced by node2's outbound side or kernel).
//! Needs root.
use std::time::Duration;

use mesh_e2e::{bins::Binaries, cluster::Cluster};
use mesh_testkit::try_eventually;
use serde_json::Value;

/// How long an agent may take to show a policy change.
const WAIT: Duration = Duration::from_secs(20);
const P1: u16 = 9080;
const P2: u16 = 9081;
const TAG: &str = "maz";

fn cluster() -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["b", "c"])],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve("b", P1, None).unwrap();
    c.serve("b", P2, None).unwrap();
    c.wait_ready("node1", 3, &["a"]).unwrap();
    c.wait_ready("node2", 3, &["b", "c"]).unwrap();
    c
}

fn generation(mesh: &Value, field: &str) -> u64 {
    mesh[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {mesh}"))
}

/// Writes the policy file and waits until both agents hold exactly the
/// policies named (`<ns>/<name>`) and their kernel maps hold that view: the
/// kernel generation has moved past the one before the change (every
/// change here renames the policies, so each agent takes a new view) and
/// caught up with the view's.
fn apply(c: &Cluster, yaml: &str, names: &[&str]) {
    let nodes = ["node1", "node2"];
    let before: Vec<u64> = nodes
        .iter()
        .map(|node| generation(&c.agent(node).mesh().unwrap(), "kernel_policy_generation"))
        .collect();
    c.write_config("30-authz.yaml", yaml).unwrap();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    for (node, before) in nodes.into_iter().zip(before) {
        let what = format!("{node} holding policies {want:?} in its kernel maps");
        let got = try_eventually(&what, WAIT, || {
            let mesh = c.agent(node).mesh().unwrap();
            let have: Vec<String> = mesh["policies"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .filter(|p| !p.ends_with("istio_converted_static_strict"))
                .collect();
            let kernel = generation(&mesh, "kernel_policy_generation");
            let view = generation(&mesh, "policy_generation");
            if have == want && kernel > before && kernel == view {
                Ok(())
            } else {
                Err(format!(
                    "has {have:?}, kernel generation {kernel} (before the change {before}), \
                     view generation {view}"
                ))
            }
        });
        got.unwrap_or_else(|e| panic!("{e}\n{}", c.agent(node).log_tail()));
    }
}

fn probe(c: &Cluster, from: &str, port: u16) -> Value {
    let to = c.pod("b").addr(port).to_string();
    c.client(from, &["probe", "--to", &to, "--timeout-ms", "3000"])
        .unwrap()
}

#[track_caller]
fn allowed(c: &Cluster, from: &str, port: u16) {
    let r = probe(c, from, port);
    assert_eq!(r["ok"], true, "{from} -> b:{port} should be allowed: {r}");
}

/// Denied by a proxy: the agent accepted the connection, then reset it
/// (the reset may beat the client's connect() return, so the stage varies;
/// what it never is, is the kernel's EPERM).
#[track_caller]
fn denied_by_proxy(c: &Cluster, from: &str, port: u16) {
    let r = probe(c, from, port);
    assert_eq!(r["ok"], false, "{from} -> b:{port} should be denied: {r}");
    assert_ne!(r["error_kind"], "PermissionDenied", "{r}");
}

/// Denied by the kernel at connect(): EPERM.
#[track_caller]
fn denied_in_kernel(c: &Cluster, from: &str, port: u16) {
    let r = probe(c, from, port);
    assert_eq!(r["ok"], false, "{from} -> b:{port} should be denied: {r}");
    assert_eq!(r["stage"], "connect", "{r}");
    assert_eq!(r["error_kind"], "PermissionDenied", "{r}");
}

fn policy(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\n{spec}"
    )
}

const SELECT_B: &str = "spec:\n  selector:\n    matchLabels:\n      app: b\n";

#[test]
fn authorization_policy_matrix() {
    let c = cluster();
    let a_ip = c.pod("a").ip.to_string();

    // No policy: everything flows.
    for (from, port) in [("a", P1), ("a", P2), ("c", P1)] {
        allowed(&c, from, port);
    }

    // ALLOW by principal: only `a`; `c` (same node) is refused by the proxy.
    apply(
        &c,
        &policy(
            "allow-a",
            "default",
            &format!("{SELECT_B}  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n"),
        ),
        &["default/allow-a"],
    );
    allowed(&c, "a", P1);
    allowed(&c, "a", P2);
    denied_by_proxy(&c, "c", P1);

    // ALLOW by principal AND port: a's other port is refused at node2's
    // inbound HBONE.
    apply(
        &c,
        &policy(
            "allow-a-p1",
            "default",
            &format!("{SELECT_B}  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n    to:\n    - operation:\n        ports: [\"{P1}\"]\n"),
        ),
        &["default/allow-a-p1"],
    );
    allowed(&c, "a", P1);
    denied_by_proxy(&c, "a", P2);
    denied_by_proxy(&c, "c", P1);

    // ipBlocks: the source pod address travels in `forwarded`.
    apply(
        &c,
        &policy(
            "allow-ip",
            "default",
            &format!(
                "{SELECT_B}  rules:\n  - from:\n    - source:\n        ipBlocks: [\"{a_ip}/32\"]\n"
            ),
        ),
        &["default/allow-ip"],
    );
    allowed(&c, "a", P1);
    denied_by_proxy(&c, "c", P1);
    apply(
        &c,
        &policy(
            "deny-not-ip",
            "default",
            &format!("{SELECT_B}  action: DENY\n  rules:\n  - from:\n    - source:\n        notIpBlocks: [\"{a_ip}\"]\n"),
        ),
        &["default/deny-not-ip"],
    );
    allowed(&c, "a", P1);
    denied_in_kernel(&c, "c", P1);

    // DENY on L4 facts the kernel knows: refused at connect() on the
    // source's node, counted there.
    let before = c
        .agent("node1")
        .kernel_counter("denied_connect_policy")
        .unwrap();
    apply(
        &c,
        &policy(
            "deny-a",
            "default",
            &format!("{SELECT_B}  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n"),
        ),
        &["default/deny-a"],
    );
    denied_in_kernel(&c, "a", P1);
    allowed(&c, "c", P1);
    let after = c
        .agent("node1")
        .kernel_counter("denied_connect_policy")
        .unwrap();
    assert!(
        after > before,
        "kernel denial not counted ({before} -> {after})"
    );

    // notPorts cannot be kernel entries: the destination's proxy denies.
    apply(
        &c,
        &policy(
            "deny-a-not-p1",
            "default",
            &format!("{SELECT_B}  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n    to:\n    - operation:\n        notPorts: [\"{P1}\"]\n"),
        ),
        &["default/deny-a-not-p1"],
    );
    allowed(&c, "a", P1);
    denied_by_proxy(&c, "a", P2);

    // Precedence: DENY (namespace-wide, by namespace and port) beats an
    // ALLOW-everything.
    let both = format!(
        "{}---\n{}",
        policy("allow-all", "default", "spec:\n  rules:\n  - {}\n"),
        policy(
            "deny-ns-p2",
            "default",
            &format!("spec:\n  action: DENY\n  rules:\n  - from:\n    - source:\n        namespaces: [\"default\"]\n    to:\n    - operation:\n        ports: [\"{P2}\"]\n"),
        )
    );
    apply(&c, &both, &["default/allow-all", "default/deny-ns-p2"]);
    allowed(&c, "a", P1);
    allowed(&c, "c", P1);
    denied_in_kernel(&c, "a", P2);
    denied_in_kernel(&c, "c", P2);

    // notNamespaces and `when` on an L4 key.
    apply(
        &c,
        &policy(
            "deny-when",
            "default",
            &format!("{SELECT_B}  action: DENY\n  rules:\n  - from:\n    - source:\n        notNamespaces: [\"kube-system\"]\n    when:\n    - key: source.principal\n      values: [\"cluster.local/ns/default/sa/c\"]\n"),
        ),
        &["default/deny-when"],
    );
    allowed(&c, "a", P1);
    denied_in_kernel(&c, "c", P1);

    // targetRefs to a Service: the Service's endpoints are the targets.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: b-svc\n  namespace: default\nspec:\n  clusterIP: 10.96.0.20\n  selector:\n    app: b\n  ports:\n  - port: 80\n    targetPort: 9080\n";
    c.write_config("25-service.yaml", svc).unwrap();
    apply(
        &c,
        &policy(
            "deny-c-via-service",
            "default",
            "spec:\n  targetRefs:\n  - kind: Service\n    group: \"\"\n    name: b-svc\n  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/c\"]\n",
        ),
        &["default/deny-c-via-service"],
    );
    allowed(&c, "a", P1);
    denied_in_kernel(&c, "c", P1);
    // …and the VIP itself, whose only endpoint is denied.
    let vip = c
        .client(
            "c",
            &["probe", "--to", "10.96.0.20:80", "--timeout-ms", "3000"],
        )
        .unwrap();
    assert_eq!(vip["error_kind"], "PermissionDenied", "{vip}");

    // Mesh-wide (root namespace) DENY, then the same as dry-run, and AUDIT:
    // the last two never block.
    apply(
        &c,
        &policy(
            "deny-p2-mesh-wide",
            "istio-system",
            &format!("spec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        ports: [\"{P2}\"]\n"),
        ),
        &["istio-system/deny-p2-mesh-wide"],
    );
    denied_in_kernel(&c, "a", P2);
    allowed(&c, "a", P1);
    let dry = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: dry\n  namespace: istio-system\n  annotations:\n    istio.io/dry-run: \"true\"\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        ports: [\"{P2}\"]\n---\n{}",
        policy("audit-b", "default", &format!("{SELECT_B}  action: AUDIT\n  rules:\n  - {{}}\n"))
    );
    apply(&c, &dry, &["istio-system/dry", "default/audit-b"]);
    allowed(&c, "a", P2);
    allowed(&c, "c", P1);
    let log = std::fs::read_to_string(&c.agent("node2").spec.log).unwrap();
    assert!(log.contains("AUDIT policy matched"), "no audit log line");
    assert!(log.contains("dry-run: would deny"), "no dry-run log line");
}

#[test]
fn a_policy_change_closes_connections_it_no_longer_allows() {
    let mut c = cluster();
    let to_b = c.pod("b").addr(P1).to_string();
    let held = c
        .background("a", &["hold", "--to", &to_b, "--max-seconds", "30"], |v| {
            v["connected"] == true
        })
        .unwrap();
    // Same-node connection, which must stay: the policy names `a` only.
    let kept = c
        .background("c", &["hold", "--to", &to_b, "--max-seconds", "30"], |v| {
            v["connected"] == true
        })
        .unwrap();
    apply(
        &c,
        &policy(
            "deny-a",
            "default",
            &format!("{SELECT_B}  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n"),
        ),
        &["default/deny-a"],
    );
    let closed = c.servers[held]
        .printed_line(Duration::from_secs(10), |v| v["closed"] == true)
        .expect("the now-denied connection stayed open");
    assert!(
        closed["round_trips"].as_u64().unwrap() >= 1,
        "it never worked before the change: {closed}"
    );
    assert!(
        c.servers[kept]
            .printed_line(Duration::from_secs(1), |v| v["closed"] == true)
            .is_err(),
        "the still-allowed connection was closed too"
    );
    let mesh = c.agent("node2").mesh().unwrap();
    assert!(
        mesh["closed_by_policy"].as_u64().unwrap() >= 1,
        "node2 did not count the closure: {mesh}"
    );
}
