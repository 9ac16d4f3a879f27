//! The differential test for ingress gateways: a stock Envoy connects to
//! the control plane as a gateway pod (`router~` node id,
//! docs/contracts/gateway-xds.md) and `mesh-waypoint --role gateway` as
//! another pod the same Gateways select; both get the listeners and
//! routes of the seeds' Gateways (applied unmodified) and must answer the
//! same requests alike: the same status, the same backend pod, the same
//! redirect, the same refused handshakes.
//!
//! Topology: one node; in namespace `default` the pods `gateway-envoy`
//! and `gateway-mesh` (labels `istio: ingressgateway` and `app:
//! my-gateway-controller`, what the seeds' selectors name), the backends
//! `productpage` (9080), `kiali` (20001) and `tracing` (80 → 16686), and a
//! client. Nothing is captured (`istio.io/dataplane-mode: none`), no node
//! agent runs: the gateways reach the backends in plain TCP.
//!
//! Certificates: a test CA signs one per HTTPS host under the test's
//! directory; seed 003-01 names `/tmp/tls.crt` and `/tmp/tls.key`, which
//! the test writes and removes afterwards. Envoy and mesh-waypoint read
//! the same files.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::Path,
};

use mesh_e2e::{
    cluster::{Cluster, CONTROL_IP},
    envoy::{
        add_vhost_route_names, envoy_bin, ConfigDump, Envoy, EnvoySpec, WaypointNode, XdsKind,
    },
    waypoint::{waypoint_bin, MeshWaypoint, WaypointSpec},
    Binaries,
};
use mesh_testkit::eventually;

use super::{
    gateway_scenarios::{GatewayProbe, GatewayScenario, Scheme, GATEWAY_SCENARIOS, TLS_DIR},
    scenarios::{Expect, Probe, EXACT_SAMPLES},
    tally, SEEDS, WAIT,
};

/// Harness pod → (pod name, app, version, port).
const BACKENDS: &[(&str, &str, &str, &str, u16)] = &[
    ("pp", "productpage-v1", "productpage", "v1", 9080),
    ("kiali", "kiali-v1", "kiali", "v1", 20001),
    ("tracing", "tracing-v1", "tracing", "v1", 16686),
];
/// Harness pod → pod name of the two gateways.
const GATEWAYS: &[(&str, &str)] = &[("envoy", "gateway-envoy"), ("mesh", "gateway-mesh")];
/// Harness pod → the proxy it runs, as messages name it.
const PROXIES: [(&str, &str); 2] = [("envoy", "envoy"), ("mesh", "mesh-waypoint")];
/// HTTPS requests per probe and proxy (one `curl`, one handshake each).
const TLS_SAMPLES: usize = 5;

#[test]
fn envoy_and_mesh_gateway_route_alike() {
    mesh_e2e::require_root();
    let envoy_path = match envoy_bin() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let waypoint = waypoint_bin(&bins.control).unwrap_or_else(|why| {
        panic!("{why}: build it (`cargo xtask test` does)");
    });
    let mut pods: Vec<&str> = vec!["client"];
    pods.extend(GATEWAYS.iter().map(|g| g.0));
    pods.extend(BACKENDS.iter().map(|b| b.0));
    let mut c = Cluster::new("mgwd", bins, &[("node1", &pods)]).unwrap();
    let tls = c.dir.join("tls");
    let _fixed = write_certificates(&tls);
    c.write_config("00-topology.yaml", &topology_yaml(&c))
        .unwrap();
    // A gateway pod gets listeners only once a Gateway selects it: the
    // first scenario is in place before the proxies start.
    let mut applied = apply(&c, &GATEWAY_SCENARIOS[0], &tls, vec![]);
    c.start_control(&[]).unwrap();
    for (pod, name, _, version, port) in BACKENDS {
        super::serve_podhttp(&mut c, pod, &format!("{name}.default"), *port, version);
    }
    let xds = SocketAddr::from((CONTROL_IP, 15010));
    let dir = c.dir.clone();
    let mut spec = EnvoySpec::new(node(&c, "envoy"), xds);
    spec.gateway = true;
    let mut envoy = Envoy::start(
        &envoy_path,
        spec,
        Some(&c.pod("envoy").netns.path()),
        &dir.join("envoy"),
    )
    .unwrap();
    let mut spec = WaypointSpec::new(node(&c, "mesh"), "ingress", xds);
    spec.gateway = true;
    let mut wp = MeshWaypoint::start(
        &waypoint,
        spec,
        Some(&c.pod("mesh").netns.path()),
        &dir.join("mesh-waypoint"),
    )
    .unwrap();
    envoy.wait_live(WAIT).unwrap();
    envoy
        .wait_xds_accepted(
            &[XdsKind::Lds, XdsKind::Rds, XdsKind::Cds, XdsKind::Eds],
            WAIT,
        )
        .unwrap();
    wp.wait_ready(WAIT).unwrap();

    for (i, s) in GATEWAY_SCENARIOS.iter().enumerate() {
        eprintln!("gateway scenario: {}", s.name);
        if i > 0 {
            applied = apply(&c, s, &tls, applied);
        }
        // mesh-waypoint's `/config_dump` shows no gateway routes: it is
        // seen to have the scenario when its first probe answers as
        // expected (see `GatewayScenario::probes`).
        wait_vhosts(s, "envoy", || Ok(active_vhosts(&envoy.config_dump()?)));
        for (pod, proxy) in PROXIES {
            settle(&c, s, &s.probes[0], pod, proxy, &tls);
        }
        let rejected = envoy.stats().unwrap().rejected();
        assert!(
            rejected.is_empty(),
            "{}: envoy rejected {rejected:?}\n{}",
            s.name,
            envoy.rejection_log()
        );
        for probe in s.probes {
            let keys: Vec<_> = PROXIES
                .iter()
                .map(|(pod, proxy)| {
                    let keys = sample(&c, probe, pod, &tls);
                    let what = format!(
                        "{}: {proxy} for {:?} {}:{}{}",
                        s.name, probe.scheme, probe.host, probe.port, probe.path
                    );
                    assert!(
                        keys.iter().all(|(k, _)| k == probe.expect),
                        "{what}: want every reply {:?}, got {keys:?}",
                        probe.expect
                    );
                    keys
                })
                .collect();
            assert_eq!(keys[0], keys[1], "{}: envoy vs mesh-waypoint", s.name);
        }
    }
    let stats = envoy.stats().unwrap();
    assert!(stats.rejected().is_empty(), "{:?}", stats.rejected());
}

/// Replaces the previous scenario's files (`applied`) with `s`'s; returns
/// the files written.
fn apply(c: &Cluster, s: &GatewayScenario, tls: &Path, applied: Vec<String>) -> Vec<String> {
    for file in applied {
        let _ = std::fs::remove_file(c.config_dir().join(file));
    }
    let mut written = vec![];
    for seed in s.seeds {
        let text = std::fs::read_to_string(Path::new(SEEDS).join(seed)).unwrap();
        let file = format!("50-seed-{seed}");
        c.write_config(&file, &text).unwrap();
        written.push(file);
    }
    for (file, text) in s.extra {
        let text = text.replace(TLS_DIR, &tls.display().to_string());
        c.write_config(file, &text).unwrap();
        written.push(file.to_string());
    }
    written
}

/// Sends `probe` to the gateway in harness pod `pod` until one reply is
/// the expected one (at most [`WAIT`]): the proxy has the scenario's
/// listeners, routes and endpoints.
fn settle(
    c: &Cluster,
    s: &GatewayScenario,
    probe: &GatewayProbe,
    pod: &str,
    proxy: &str,
    tls: &Path,
) {
    let what = format!(
        "{}: {proxy} answering {:?} {}:{}{} with {:?}",
        s.name, probe.scheme, probe.host, probe.port, probe.path, probe.expect
    );
    eventually(&what, WAIT, || {
        let got = once(c, probe, pod, tls, 1);
        if got.len() == 1 && got.contains_key(probe.expect) {
            Ok(())
        } else {
            Err(format!("got {got:?}"))
        }
    });
}

/// The replies of the gateway in harness pod `pod` to `probe`, counted
/// by key: [`EXACT_SAMPLES`] plain requests on one keep-alive connection,
/// or [`TLS_SAMPLES`] `curl`s (one handshake each).
fn sample(c: &Cluster, probe: &GatewayProbe, pod: &str, tls: &Path) -> BTreeMap<String, usize> {
    let n = match probe.scheme {
        Scheme::Http => EXACT_SAMPLES,
        Scheme::Https { .. } => TLS_SAMPLES,
    };
    once(c, probe, pod, tls, n)
}

/// `n` requests of `probe` to the gateway in harness pod `pod`.
fn once(
    c: &Cluster,
    probe: &GatewayProbe,
    pod: &str,
    tls: &Path,
    n: usize,
) -> BTreeMap<String, usize> {
    match probe.scheme {
        Scheme::Http => {
            let as_probe = Probe {
                host: probe.host,
                path: probe.path,
                headers: &[],
                expect: Expect::Exactly(probe.expect),
            };
            let client = c.pod("client").netns.path();
            tally(&client, c.pod(pod).addr(probe.port), &as_probe, n)
        }
        Scheme::Https { client_cert } => {
            let mut counts = BTreeMap::new();
            for _ in 0..n {
                *counts
                    .entry(curl_key(c, pod, probe, tls, client_cert))
                    .or_default() += 1;
            }
            counts
        }
    }
}

/// One `curl` through the gateway in harness pod `pod`: the reply's key
/// (as [`super::reply_key`]), or `error` when there was no HTTP answer.
fn curl_key(c: &Cluster, pod: &str, probe: &GatewayProbe, tls: &Path, client_cert: bool) -> String {
    let ip = c.pod(pod).ip;
    let url = if probe.port == 443 {
        format!("https://{}{}", probe.host, probe.path)
    } else {
        format!("https://{}:{}{}", probe.host, probe.port, probe.path)
    };
    let file = |name: &str| tls.join(name).display().to_string();
    let mut args = vec![
        "-D".to_string(),
        "-".into(),
        "--cacert".into(),
        file("ca.pem"),
        "--resolve".into(),
        format!("{}:{}:{ip}", probe.host, probe.port),
    ];
    if client_cert {
        args.extend(["--cert".into(), file("client.crt")]);
        args.extend(["--key".into(), file("client.key")]);
    }
    args.push(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match c.curl("client", &args) {
        Ok((status, out)) => {
            let header = |name: &str| {
                out.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let location = header("location").filter(|_| (300..400).contains(&status));
            super::reply_key(status, header("x-pod"), location)
        }
        Err(_) => "error".into(),
    }
}

/// Waits until `proxy`'s route configurations have exactly the scenario's
/// virtual hosts.
fn wait_vhosts(
    s: &GatewayScenario,
    proxy: &str,
    names: impl Fn() -> anyhow::Result<BTreeMap<String, Vec<String>>>,
) {
    let mut want: Vec<&str> = s.vhosts.to_vec();
    want.sort_unstable();
    let what = format!("{}: {proxy} getting virtual hosts {want:?}", s.name);
    eventually(&what, WAIT, || {
        let all = names()?;
        let have: Vec<&str> = all.keys().map(String::as_str).collect();
        if have == want {
            Ok(())
        } else {
            Err(anyhow::anyhow!("it has {have:?}"))
        }
    });
}

/// Route names per virtual host over the route configurations Envoy's
/// active listeners name (a removed listener drains for minutes, its
/// routes stay in the dump meanwhile).
fn active_vhosts(dump: &ConfigDump) -> BTreeMap<String, Vec<String>> {
    let section = |suffix: &str| {
        dump.0["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(suffix)))
            .cloned()
            .unwrap_or_default()
    };
    let listeners = section(".ListenersConfigDump");
    let named: BTreeSet<&str> = listeners["dynamic_listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| {
            l["active_state"]["listener"]["filter_chains"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .flat_map(|chain| chain["filters"].as_array().into_iter().flatten())
        .filter_map(|f| f["typed_config"]["rds"]["route_config_name"].as_str())
        .collect();
    let routes = section(".RoutesConfigDump");
    let mut out = BTreeMap::new();
    for rc in routes["dynamic_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let config = &rc["route_config"];
        if config["name"].as_str().is_some_and(|n| named.contains(n)) {
            add_vhost_route_names(&config["virtual_hosts"], &mut out);
        }
    }
    out
}

/// The gateway identity of a harness pod: `<name>.default`.
fn node(c: &Cluster, pod: &str) -> WaypointNode {
    let name = GATEWAYS
        .iter()
        .find(|g| g.0 == pod)
        .map(|g| g.1)
        .expect("a gateway pod");
    WaypointNode {
        pod_ip: c.pod(pod).ip.into(),
        pod_name: name.into(),
        namespace: "default".into(),
        waypoint: "ingress".into(),
    }
}

/// Files the test writes outside its own directory, removed on drop.
struct Written(Vec<&'static str>);

impl Drop for Written {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A test CA (`ca.pem`) and the leaf certificates it signs, under `dir`:
/// `a`, `b`, `m` (each for `<name>.example.com`) and `client`; and the one
/// seed 003-01 names at fixed paths.
fn write_certificates(dir: &Path) -> Written {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gateway differential test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let leaf = |crt: &Path, key_path: &Path, san: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![san.to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(crt, cert.pem()).unwrap();
        std::fs::write(key_path, key.serialize_pem()).unwrap();
    };
    for name in ["a", "b", "m", "client"] {
        leaf(
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
            &format!("{name}.example.com"),
        );
    }
    let fixed = Written(vec!["/tmp/tls.crt", "/tmp/tls.key"]);
    leaf(
        Path::new("/tmp/tls.crt"),
        Path::new("/tmp/tls.key"),
        "ext-host.example.com",
    );
    fixed
}

/// Namespace, node, the two gateway pods, the backends and their services.
fn topology_yaml(c: &Cluster) -> String {
    let mut docs = vec![
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n".to_string(),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 10.0.0.1\n".to_string(),
    ];
    for (pod, name) in GATEWAYS {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    istio: ingressgateway\n    app: my-gateway-controller\n    istio.io/dataplane-mode: none\nspec:\n  serviceAccountName: ingress\n  nodeName: node1\nstatus:\n  podIP: {}\n",
            c.pod(pod).ip
        ));
    }
    for (pod, name, app, version, _) in BACKENDS {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    app: {app}\n    version: {version}\n    istio.io/dataplane-mode: none\nspec:\n  serviceAccountName: {app}\n  nodeName: node1\nstatus:\n  podIP: {}\n",
            c.pod(pod).ip
        ));
    }
    for (name, vip, port, target) in [
        ("productpage", "10.96.0.40", 9080, 9080),
        ("kiali", "10.96.0.41", 20001, 20001),
        ("tracing", "10.96.0.42", 80, 16686),
    ] {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {vip}\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {target}\n"
        ));
    }
    docs.join("---\n")
}
