//! The chained CNI plugin for real: Debian's reference plugins (bridge with
//! host-local IPAM, loopback) and `mesh-cni` last in a conflist, run the
//! way containerd runs them, in network namespaces the test creates, with
//! the real agent (`--cni-socket`), eBPF capture and control plane. Needs
//! root, `containernetworking-plugins` (`cargo xtask setup`) and the
//! binaries (`cargo build -p mesh-agent -p mesh-control -p mesh-cni`).
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use mesh_e2e::{
    bins::Binaries,
    cgroup::Cgroup,
    cluster::Cluster,
    cni::{self, Runtime, Sandbox},
    netns::Netns,
    topology::Pod,
};
use mesh_testkit::eventually;
use serde_json::{json, Value};

const TAG: &str = "cnc";
const ECHO: u16 = 9080;
const VIP: &str = "10.96.0.10:80";

/// A pod made by the CNI chain: its namespace and cgroup leaf (removed on
/// drop, before the cluster's node goes).
struct CniPod {
    pod: Pod,
    sandbox: Sandbox,
    result: Option<Value>,
}

struct Setup {
    runtime: Runtime,
    /// Holds the socket, the records, host-local's state.
    dir: PathBuf,
}

impl Setup {
    fn socket(&self) -> PathBuf {
        self.dir.join("cni.sock")
    }
    fn records(&self) -> PathBuf {
        self.dir.join("pods")
    }
}

fn setup(c: &Cluster) -> Setup {
    let dir = c.dir.join("cni");
    std::fs::create_dir_all(dir.join("netns-empty")).unwrap();
    let mesh_cni = cni::mesh_cni_dir(&c.bins.agent);
    assert!(
        mesh_cni.join("mesh-cni").exists(),
        "mesh-cni not built: cargo build -p mesh-cni"
    );
    assert!(
        Path::new(cni::DEBIAN_CNI_DIR).join("bridge").exists(),
        "install containernetworking-plugins (cargo xtask setup)"
    );
    // The node's pod bridge br0 (10.244.1.1/24, the agent's redirect
    // address) is reused; host-local hands out addresses the harness never
    // uses.
    // The bridge's MAC otherwise follows its lowest port's and changes as
    // pods come and go, which the bridge plugin's CHECK reports as a
    // mismatch: pin it, as a node's long-lived bridge has it pinned.
    let node = &c.node("node1").netns;
    let link = node.exec(&["-j", "link", "show", "br0"]).unwrap();
    let link: Value = serde_json::from_str(&link).unwrap();
    let mac = link[0]["address"].as_str().unwrap().to_string();
    node.exec(&["link", "set", "br0", "address", &mac]).unwrap();
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "mesh-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "br0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dir.join("ipam"),
                    "ranges": [[{
                        "subnet": "10.244.1.0/24",
                        "rangeStart": "10.244.1.200",
                        "rangeEnd": "10.244.1.230",
                        "gateway": "10.244.1.1"
                    }]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {
                "type": "mesh-cni",
                "agentSocket": dir.join("cni.sock"),
                "agentTimeoutSeconds": 20,
                "logFile": dir.join("mesh-cni.log"),
                "logLevel": "debug"
            }
        ]
    });
    Setup {
        runtime: Runtime {
            conflist,
            cni_path: vec![PathBuf::from(cni::DEBIAN_CNI_DIR), mesh_cni],
            node_netns: c.node("node1").netns.path(),
        },
        dir,
    }
}

fn agent_args(s: &Setup) -> Vec<String> {
    vec![
        "--cni-socket".into(),
        s.socket().display().to_string(),
        "--pod-records".into(),
        s.records().display().to_string(),
        "--enroll-wait".into(),
        "5s".into(),
        // Named namespaces of other tests on this machine are not ours.
        "--netns-dir".into(),
        s.dir.join("netns-empty").display().to_string(),
    ]
}

fn start_agent(c: &mut Cluster, s: &Setup) {
    let args = agent_args(s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_agent("node1", &args).unwrap();
}

/// A sandbox (netns + cgroup leaf under node1) before any plugin ran.
fn sandbox(c: &Cluster, namespace: &str, name: &str) -> CniPod {
    let netns = Netns::create(&format!("{}-cni-{name}", c.prefix)).unwrap();
    let cgroup = Cgroup::create(c.node("node1").cgroup.path.join(format!("cni-{name}"))).unwrap();
    let sandbox = Sandbox {
        container_id: format!("{}-{name}-0123456789abcdef", c.prefix),
        netns: netns.path(),
        namespace: namespace.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    };
    CniPod {
        pod: Pod {
            name: name.into(),
            ip: Ipv4Addr::UNSPECIFIED,
            ip6: std::net::Ipv6Addr::UNSPECIFIED,
            netns,
            cgroup,
        },
        sandbox,
        result: None,
    }
}

fn add(s: &Setup, p: &mut CniPod) {
    let result = s.runtime.add(&p.sandbox).unwrap();
    p.pod.ip = cni::result_ip(&result).unwrap_or_else(|| panic!("no IP in {result}"));
    p.result = Some(result);
}

/// The CNI pods' YAML: two namespaces, pods on node1 with the addresses
/// known so far (none yet = pending, as kubelet reports them).
fn write_pods(c: &Cluster, ambient: bool, pods: &[(&str, &str, Option<Ipv4Addr>)]) {
    let label = if ambient {
        "  labels:\n    istio.io/dataplane-mode: ambient\n"
    } else {
        ""
    };
    let mut yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cni-amb\n{label}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: cni-plain\n"
    );
    for (ns, name, ip) in pods {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  serviceAccountName: {name}\n  nodeName: node1\n"
        );
        if let Some(ip) = ip {
            yaml += &format!("status:\n  podIP: {ip}\n");
        }
    }
    c.write_config("20-cni-pods.yaml", &yaml).unwrap();
}

/// Whether node1's agent has a namespace with `ip` in its enrolment map.
fn enrolled_ips(c: &Cluster) -> Vec<String> {
    let cap = c.agent("node1").capture().unwrap();
    cap["enrolled"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pod_ip"].as_str().map(str::to_string))
        .collect()
}

/// node1's agent knows `pod` with an address and holds its certificate.
fn wait_workload(c: &Cluster, ns: &str, pod: &str, ip: Ipv4Addr) {
    let uid = format!("Kubernetes//Pod/{ns}/{pod}");
    let id = format!("spiffe://cluster.local/ns/{ns}/sa/{pod}");
    eventually(
        &format!("agent knows {uid} at {ip} with its certificate"),
        Duration::from_secs(30),
        || {
            let Ok(m) = c.agent("node1").mesh() else {
                return false;
            };
            let has_ip = m["workloads"].as_array().is_some_and(|ws| {
                ws.iter().any(|w| {
                    w.to_string().contains(&uid) && w.to_string().contains(&ip.to_string())
                })
            });
            let has_cert = m["certificates"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["identity"] == id.as_str()));
            has_ip && has_cert
        },
    );
}

fn echo(c: &Cluster, pod: &Pod, to: &str) -> Value {
    let out = mesh_e2e::pod::run(
        &c.bins.podctl,
        pod,
        &["echo", "--to", to, "--bytes", "65536"],
    )
    .unwrap();
    assert_eq!(out["received"], out["sent"], "{out}");
    out
}

#[test]
fn cni_chain_enrols_ambient_pods_before_add_returns_and_reconciles() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &[]), ("node2", &["web"])],
    )
    .unwrap();
    c.write_config(
        "10-service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: 10.96.0.10\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 9080\n",
    )
    .unwrap();
    // Pending pods: known to the control plane before their sandbox exists.
    write_pods(
        &c,
        true,
        &[("cni-amb", "client", None), ("cni-plain", "plain", None)],
    );
    let s = setup(&c);
    c.start_control(&[]).unwrap();
    start_agent(&mut c, &s);
    c.start_agent("node2", &[]).unwrap();
    c.serve("web", ECHO, None).unwrap();
    c.wait_ready("node2", 1, &["web"]).unwrap();
    c.wait_ready("node1", 1, &[]).unwrap();

    // VERSION.
    let version = s.runtime.plugin_version("mesh-cni").unwrap();
    assert!(
        version["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.0.0")),
        "{version}"
    );

    // A pod the control plane does not know (yet): the agent cannot decide
    // within --enroll-wait, so ADD fails with "try again later".
    let stranger = sandbox(&c, "cni-amb", "stranger");
    let err = s.runtime.add(&stranger.sandbox).unwrap_err();
    let failed = err
        .downcast_ref::<cni::ChainError>()
        .expect("a plugin failed");
    assert_eq!(failed.run.plugin, "mesh-cni", "{err}");
    let answer = failed.run.stdout.clone().unwrap();
    assert_eq!(answer["code"], 11, "{answer}");
    assert!(
        answer["details"].as_str().unwrap().contains("xDS view"),
        "{answer}"
    );
    s.runtime.del(&stranger.sandbox, None).unwrap();
    drop(stranger);

    // ADD of an ambient pod: enrolled by the time ADD returns.
    let mut client = sandbox(&c, "cni-amb", "client");
    add(&s, &mut client);
    let ip = client.pod.ip.to_string();
    assert!(
        enrolled_ips(&c).contains(&ip),
        "client {ip} not enrolled when ADD returned: {:?}",
        enrolled_ips(&c)
    );
    // ADD passed the bridge's result through (the runtime sees its IP).
    let result = client.result.clone().unwrap();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert!(
        result["interfaces"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{result}"
    );

    // ADD of a pod of a non-ambient namespace: not enrolled.
    let mut plain = sandbox(&c, "cni-plain", "plain");
    add(&s, &mut plain);
    assert!(!enrolled_ips(&c).contains(&plain.pod.ip.to_string()));

    // kubelet publishes the addresses; traffic flows.
    write_pods(
        &c,
        true,
        &[
            ("cni-amb", "client", Some(client.pod.ip)),
            ("cni-plain", "plain", Some(plain.pod.ip)),
        ],
    );
    wait_workload(&c, "cni-amb", "client", client.pod.ip);
    let out = echo(&c, &client.pod, VIP);
    let record = c
        .agent("node1")
        .finished_connection(out["local"].as_str().unwrap())
        .unwrap();
    assert_eq!(record["route"], "hbone", "{record}");
    assert_eq!(
        record["source_identity"],
        "spiffe://cluster.local/ns/cni-amb/sa/client"
    );
    // The plain pod talks direct: node1's agent never sees it.
    let web = c.pod("web").addr(ECHO).to_string();
    echo(&c, &plain.pod, &web);
    let conns = c.agent("node1").connections().unwrap().to_string();
    assert!(
        !conns.contains(&format!("\"{}:", plain.pod.ip)),
        "plain pod's connection was captured: {conns}"
    );

    // CHECK agrees with the kernel.
    s.runtime
        .check(&client.sandbox, client.result.as_ref().unwrap())
        .unwrap();
    s.runtime
        .check(&plain.sandbox, plain.result.as_ref().unwrap())
        .unwrap();

    // The namespace loses its ambient label: the running pod is unenrolled
    // live; the label back: enrolled again.
    let published = [
        ("cni-amb", "client", Some(client.pod.ip)),
        ("cni-plain", "plain", Some(plain.pod.ip)),
    ];
    write_pods(&c, false, &published);
    eventually(
        "client unenrolled after the label went",
        Duration::from_secs(30),
        || !enrolled_ips(&c).contains(&ip),
    );
    write_pods(&c, true, &published);
    eventually(
        "client enrolled again after the label came back",
        Duration::from_secs(30),
        || enrolled_ips(&c).contains(&ip),
    );

    // DEL unenrols and drops the record.
    s.runtime
        .del(&client.sandbox, client.result.as_ref())
        .unwrap();
    assert!(!enrolled_ips(&c).contains(&ip), "{:?}", enrolled_ips(&c));
    assert_eq!(std::fs::read_dir(s.records()).unwrap().count(), 1);

    // A pod whose namespace goes while the agent is down.
    write_pods(
        &c,
        true,
        &[
            ("cni-plain", "plain", Some(plain.pod.ip)),
            ("cni-amb", "gone", None),
            ("cni-amb", "late", None),
        ],
    );
    let mut gone = sandbox(&c, "cni-amb", "gone");
    add(&s, &mut gone);
    let gone_ip = gone.pod.ip.to_string();
    assert!(enrolled_ips(&c).contains(&gone_ip));

    c.stop_agent("node1");
    // Agent down: ADD fails (no pod starts uncaptured), with "try again".
    let late = sandbox(&c, "cni-amb", "late");
    let err = s.runtime.add(&late.sandbox).unwrap_err();
    let chain = err
        .downcast_ref::<cni::ChainError>()
        .expect("a plugin failed");
    assert_eq!(chain.run.plugin, "mesh-cni", "{err}");
    assert_eq!(chain.run.stdout.as_ref().unwrap()["code"], 11, "{err}");
    // The runtime cleans up the failed ADD; DEL works with the agent down.
    s.runtime.del(&late.sandbox, None).unwrap();
    s.runtime
        .del(&plain.sandbox, plain.result.as_ref())
        .unwrap();
    drop(gone); // its netns goes while the agent is down
    drop(plain);

    start_agent(&mut c, &s);
    eventually(
        "gone pod's cookie removed on restart",
        Duration::from_secs(30),
        || !enrolled_ips(&c).contains(&gone_ip),
    );
    eventually(
        "records of gone sandboxes dropped",
        Duration::from_secs(30),
        || std::fs::read_dir(s.records()).unwrap().count() == 0,
    );
}

#[test]
fn pods_that_predate_the_plugin_are_found_by_their_address() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        "cnd",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &[])],
    )
    .unwrap();
    // A pod set up before mesh-cni was installed: no CNI ADD ever reached
    // the agent. Its address is one no other test uses, since the scan
    // looks at every namespace of the machine.
    let old_ip = Ipv4Addr::new(10, 244, 1, 240);
    let old = Netns::create(&format!("{}-cni-old", c.prefix)).unwrap();
    let node = &c.node("node1").netns;
    mesh_e2e::cmd::ip(&[
        "link", "add", "vold", "netns", &node.name, "type", "veth", "peer", "name", "eth0",
        "netns", &old.name,
    ])
    .unwrap();
    node.exec(&["link", "set", "vold", "master", "br0", "up"])
        .unwrap();
    old.exec(&["addr", "add", &format!("{old_ip}/24"), "dev", "eth0"])
        .unwrap();
    old.exec(&["link", "set", "eth0", "up"]).unwrap();
    write_pods(&c, true, &[("cni-amb", "old", Some(old_ip))]);
    let s = setup(&c);
    c.start_control(&[]).unwrap();
    let mut args = agent_args(&s);
    // This test's pod is a named namespace: scan them.
    args.truncate(args.len() - 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_agent("node1", &args).unwrap();
    eventually(
        "the old pod is enrolled by the scan",
        Duration::from_secs(30),
        || enrolled_ips(&c).contains(&old_ip.to_string()),
    );
    let records: Vec<Value> = std::fs::read_dir(s.records())
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["podName"], "old");
    assert_eq!(records[0]["netns"], old.path().display().to_string());
    drop(old);
}
