//! Differential test against a stock Envoy: the control plane's waypoint
//! xDS (LDS/RDS/CDS/EDS, contract section 2) fed to a real Envoy and to
//! `mesh-waypoint`, both on their plain `:15080` listeners, with the
//! course's Istio YAML applied unmodified. Envoy must accept every resource
//! (no `update_rejected`), and both must route the same requests the same
//! way: which version answers a header or URI match, and weighted splits
//! within the same statistical bounds.
//!
//! Topology: one node; in namespace `default` (ambient, `use-waypoint:
//! waypoint`) the waypoint Gateway with two pods, `waypoint` (runs
//! mesh-waypoint) and `waypoint-envoy` (runs Envoy), services `reviews`
//! (pods v1/v2/v3) and `productpage`; namespace `tutorial` has its own
//! `reviews` (the 002-* seeds live there) using the same waypoint. The app
//! pods opt out of capture (`istio.io/dataplane-mode: none`), so the
//! proxies reach them in plain TCP; no node agent runs.
//!
//! The same for ingress gateways (`gateway.rs`): Envoy and
//! `mesh-waypoint --role gateway` as two pods the seeds' Gateways select.
//!
//! Without Envoy (not installable) the tests are skipped with the reason;
//! `cargo xtask test` installs it. The `mesh-waypoint` binary must exist.
use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use http_body_util::{BodyExt as _, Empty};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use mesh_e2e::{
    cluster::{Cluster, CONTROL_IP},
    envoy::{envoy_bin, Envoy, EnvoySpec, WaypointNode, XdsKind, WAYPOINT_HTTP_PORT},
    pod::Server,
    waypoint::{waypoint_bin, MeshWaypoint, WaypointSpec},
    Binaries,
};
use mesh_testkit::eventually;

const SEEDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../mesh-control/tests/data/seeds"
);
const APP_PORT: u16 = 9080;
/// Every wait for a proxy or a configuration change is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// Harness pod → (Kubernetes namespace, pod name, app, version).
const APPS: &[(&str, &str, &str, &str, &str)] = &[
    ("rv1", "default", "reviews-v1", "reviews", "v1"),
    ("rv2", "default", "reviews-v2", "reviews", "v2"),
    ("rv3", "default", "reviews-v3", "reviews", "v3"),
    ("trv1", "tutorial", "reviews-v1", "reviews", "v1"),
    ("trv2", "tutorial", "reviews-v2", "reviews", "v2"),
    ("trv3", "tutorial", "reviews-v3", "reviews", "v3"),
    ("pp", "default", "productpage-v1", "productpage", "v1"),
    ("order", "tutorial", "order-v1", "order", "v1"),
];
const PROXIES: &[&str] = &["envoy", "waypoint", "client"];

mod gateway;
mod gateway_scenarios;
mod scenarios;

use scenarios::{Expect, Probe, Scenario, SCENARIOS, SPLIT_SAMPLES};

#[test]
fn envoy_and_mesh_waypoint_route_alike() {
    mesh_e2e::require_root();
    let envoy = match envoy_bin() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let waypoint = waypoint_bin(&bins.control);
    assert!(
        waypoint.is_ok(),
        "mesh-waypoint binary missing ({:?}): build it (`cargo xtask test` does)",
        waypoint.as_ref().err()
    );
    let mut pods: Vec<&str> = PROXIES.to_vec();
    pods.extend(APPS.iter().map(|a| a.0));
    let mut c = Cluster::new("mdiff", bins, &[("node1", &pods)]).unwrap();
    c.write_config("00-topology.yaml", &topology_yaml(&c))
        .unwrap();
    c.start_control(&[]).unwrap();
    for (pod, ns, name, _, version) in APPS {
        serve_podhttp(&mut c, pod, &format!("{name}.{ns}"), APP_PORT, version);
    }
    let xds = SocketAddr::from((CONTROL_IP, 15010));
    let dir = c.dir.clone();
    let mut envoy = Envoy::start(
        &envoy,
        EnvoySpec::new(node(&c, "envoy", "waypoint-envoy"), xds),
        Some(&c.pod("envoy").netns.path()),
        &dir.join("envoy"),
    )
    .unwrap();
    let mut wp = waypoint.ok().map(|bin| {
        let spec = WaypointSpec::new(node(&c, "waypoint", "waypoint"), "waypoint", xds);
        MeshWaypoint::start(
            &bin,
            spec,
            Some(&c.pod("waypoint").netns.path()),
            &dir.join("waypoint"),
        )
        .unwrap()
    });
    envoy.wait_live(WAIT).unwrap();
    envoy
        .wait_xds_accepted(
            &[XdsKind::Lds, XdsKind::Rds, XdsKind::Cds, XdsKind::Eds],
            WAIT,
        )
        .unwrap();
    if let Some(wp) = &mut wp {
        wp.wait_ready(WAIT).unwrap();
    }
    let client = c.pod("client").netns.path();
    let envoy_addr = c.pod("envoy").addr(WAYPOINT_HTTP_PORT);
    let wp_addr = c.pod("waypoint").addr(WAYPOINT_HTTP_PORT);

    let mut applied: Vec<String> = vec![];
    for s in SCENARIOS {
        eprintln!("scenario: {}", s.name);
        for file in applied.drain(..) {
            let _ = std::fs::remove_file(c.config_dir().join(file));
        }
        for seed in s.seeds {
            let text = std::fs::read_to_string(Path::new(SEEDS).join(seed)).unwrap();
            let file = format!("50-seed-{seed}");
            c.write_config(&file, &text).unwrap();
            applied.push(file);
        }
        for (file, text) in s.extra {
            c.write_config(file, text).unwrap();
            applied.push(file.to_string());
        }
        wait_routes(s, "envoy", || Ok(envoy.config_dump()?.route_names()));
        if let Some(wp) = &wp {
            wait_routes(s, "mesh-waypoint", || wp.route_names());
        }
        let rejected = envoy.stats().unwrap().rejected();
        assert!(
            rejected.is_empty(),
            "{}: envoy rejected {rejected:?}\n{}",
            s.name,
            envoy.rejection_log()
        );
        for probe in s.probes {
            let samples = probe.expect.samples();
            warm_up(&client, envoy_addr, probe);
            let from_envoy = tally(&client, envoy_addr, probe, samples);
            check(s, probe, "envoy", &from_envoy, samples);
            if wp.is_some() {
                warm_up(&client, wp_addr, probe);
                let from_wp = tally(&client, wp_addr, probe, samples);
                check(s, probe, "mesh-waypoint", &from_wp, samples);
                agree(s, probe, &from_envoy, &from_wp, samples);
            }
        }
    }
    if wp.is_some() {
        meshctl_reads_the_waypoint(&c);
    }
    let stats = envoy.stats().unwrap();
    assert!(stats.rejected().is_empty(), "{:?}", stats.rejected());
    for kind in [XdsKind::Lds, XdsKind::Rds, XdsKind::Cds, XdsKind::Eds] {
        assert!(
            stats.successes(kind) > 0,
            "envoy: no accepted {kind:?} update"
        );
    }
}

/// `meshctl proxy-config listener|route|cluster|endpoint <waypoint pod
/// netns>` against the running mesh-waypoint (the last scenario's config).
/// Skipped when no meshctl binary sits next to mesh-control.
fn meshctl_reads_the_waypoint(c: &Cluster) {
    let meshctl = c.bins.control.with_file_name("meshctl");
    if !meshctl.is_file() {
        eprintln!("meshctl check skipped: no {}", meshctl.display());
        return;
    }
    let netns = &c.pod("waypoint").netns.name;
    let pp_endpoint = format!("{}:{APP_PORT}", c.pod("pp").ip);
    for (kind, wanted) in [
        ("listener", "waypoint/default/waypoint"),
        ("route", "default/bookinfos/0"),
        ("cluster", "productpage.default"),
        ("endpoint", pp_endpoint.as_str()),
    ] {
        let out = std::process::Command::new(&meshctl)
            .args(["proxy-config", kind, netns])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(wanted),
            "meshctl proxy-config {kind} {netns}: want {wanted:?} in\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The waypoint identity of a proxy pod.
/// `podhttp serve` in `pod` on `port`, answering as `label` (`name.ns`)
/// and `version`; stopped with the cluster.
fn serve_podhttp(c: &mut Cluster, pod: &str, label: &str, port: u16, version: &str) {
    let podhttp = Path::new(env!("CARGO_BIN_EXE_podhttp"));
    let port = port.to_string();
    let args = [
        "serve",
        "--port",
        &port,
        "--pod",
        label,
        "--version",
        version,
    ];
    let server = Server::start(podhttp, c.pod(pod), &args).unwrap();
    c.servers.push(server);
}

fn node(c: &Cluster, pod: &str, name: &str) -> WaypointNode {
    WaypointNode {
        pod_ip: c.pod(pod).ip.into(),
        pod_name: name.into(),
        namespace: "default".into(),
        waypoint: "waypoint".into(),
    }
}

/// Namespaces, node, waypoint Gateway and pods, app pods and services.
fn topology_yaml(c: &Cluster) -> String {
    let mut docs = vec![
        namespace("default", ""),
        namespace("tutorial", "\n    istio.io/use-waypoint-namespace: default"),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 10.0.0.1\n".to_string(),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: waypoint\n  namespace: default\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n".to_string(),
    ];
    for (pod, name) in [("waypoint", "waypoint"), ("envoy", "waypoint-envoy")] {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    gateway.networking.k8s.io/gateway-name: waypoint\nspec:\n  serviceAccountName: waypoint\n  nodeName: node1\nstatus:\n  podIP: {}\n",
            c.pod(pod).ip
        ));
    }
    for (pod, ns, name, app, version) in APPS {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: {app}\n    version: {version}\n    istio.io/dataplane-mode: none\nspec:\n  serviceAccountName: {app}\n  nodeName: node1\nstatus:\n  podIP: {}\n",
            c.pod(pod).ip
        ));
    }
    for (name, ns, vip) in [
        ("reviews", "default", "10.96.0.20"),
        ("reviews", "tutorial", "10.96.0.21"),
        ("productpage", "default", "10.96.0.22"),
        ("order", "tutorial", "10.96.0.23"),
    ] {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  clusterIP: {vip}\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: {APP_PORT}\n    targetPort: {APP_PORT}\n"
        ));
    }
    docs.join("---\n")
}

fn namespace(name: &str, extra_labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    istio.io/dataplane-mode: ambient\n    istio.io/use-waypoint: waypoint{extra_labels}\n"
    )
}

/// Waits until `proxy` shows the scenario's route names on its vhost (an
/// empty list: the vhost exists with no VirtualService route).
fn wait_routes(
    s: &Scenario,
    proxy: &str,
    names: impl Fn() -> anyhow::Result<BTreeMap<String, Vec<String>>>,
) {
    let what = format!(
        "{}: {proxy} getting routes {:?} on {}",
        s.name, s.routes, s.vhost
    );
    eventually(&what, WAIT, || {
        let all = names()?;
        if let Some(routes) = all.get(s.vhost) {
            let vs_routes: Vec<&str> = routes
                .iter()
                .map(String::as_str)
                .filter(|n| n.contains('/'))
                .collect();
            if vs_routes == s.routes {
                return Ok(());
            }
        }
        Err(anyhow::anyhow!("it has {all:?}"))
    });
}

/// Sends the probe until three answers in a row are not 503 (clusters and
/// endpoints arrive after the routes naming them), at most [`WAIT`].
fn warm_up(client: &Path, addr: SocketAddr, probe: &Probe) {
    if !probe.expect.answered_by_a_pod() {
        return;
    }
    let what = format!(
        "{addr} answering {} {} without 503s",
        probe.host, probe.path
    );
    eventually(&what, WAIT, || {
        let t = tally(client, addr, probe, 3);
        if !t.contains_key("status 503") && !t.contains_key("error") {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
}

/// Sends `n` GETs on one keep-alive connection (reconnecting after a
/// failure) from inside `client`; counts the replies by key.
fn tally(client: &Path, addr: SocketAddr, probe: &Probe, n: usize) -> BTreeMap<String, usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut counts = BTreeMap::new();
        let mut conn = None;
        for _ in 0..n {
            let key = match send(client, addr, probe, &mut conn).await {
                Ok(key) => key,
                Err(_) => {
                    conn = None;
                    "error".to_string()
                }
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
    })
}

type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn send(
    client: &Path,
    addr: SocketAddr,
    probe: &Probe,
    conn: &mut Option<Conn>,
) -> anyhow::Result<String> {
    if conn.is_none() {
        let std = mesh_e2e::netns::connect_in(client, addr, Duration::from_secs(2))?;
        std.set_nonblocking(true)?;
        let tcp = tokio::net::TcpStream::from_std(std)?;
        let (sender, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(c);
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("connected above");
    let mut req = Request::get(probe.path).header("host", probe.host);
    for (k, v) in probe.headers {
        req = req.header(*k, *v);
    }
    sender.ready().await?;
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(req.body(Empty::new())?),
    )
    .await??;
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (pod, location) = (header("x-pod"), header("location"));
    let redirect = resp.status().is_redirection();
    resp.into_body().collect().await?;
    Ok(reply_key(status, pod, location.filter(|_| redirect)))
}

/// How a reply is counted: the answering pod (`x-pod`) of a 200, a
/// redirect's status and `Location`, else the status.
fn reply_key(status: u16, pod: Option<String>, location: Option<String>) -> String {
    match (pod, location) {
        (Some(pod), _) if status == 200 => pod,
        (_, Some(location)) => format!("status {status} {location}"),
        _ => format!("status {status}"),
    }
}

/// Largest deviation of a sample proportion from `p` over `n` trials that
/// is not a failure: 5 standard deviations (a false alarm about once in
/// 3.5 million), at least 0.02.
fn bound(p: f64, n: usize) -> f64 {
    (5.0 * (p * (1.0 - p) / n as f64).sqrt()).max(0.02)
}

fn check(s: &Scenario, probe: &Probe, proxy: &str, got: &BTreeMap<String, usize>, n: usize) {
    let what = format!(
        "{}: {proxy} for {} {} {:?}",
        s.name, probe.host, probe.path, probe.headers
    );
    match &probe.expect {
        Expect::Exactly(key) | Expect::ExactlySlow(key) => {
            assert_eq!(got.get(*key).copied(), Some(n), "{what}: got {got:?}");
        }
        Expect::Split(shares) => {
            for k in got.keys() {
                assert!(
                    shares.iter().any(|(s, _)| s == k),
                    "{what}: unexpected {k} in {got:?}"
                );
            }
            for (key, p) in *shares {
                let seen = got.get(*key).copied().unwrap_or(0) as f64 / n as f64;
                assert!(
                    (seen - p).abs() <= bound(*p, n),
                    "{what}: {key} got {seen:.3} of {n}, want {p:.3} ± {:.3} ({got:?})",
                    bound(*p, n)
                );
            }
        }
    }
}

/// Envoy and mesh-waypoint saw the same keys, in proportions that differ
/// by no more than two samples of the same distribution would.
fn agree(
    s: &Scenario,
    probe: &Probe,
    envoy: &BTreeMap<String, usize>,
    wp: &BTreeMap<String, usize>,
    n: usize,
) {
    let keys: Vec<&String> = envoy.keys().chain(wp.keys()).collect();
    for key in keys {
        let e = envoy.get(key).copied().unwrap_or(0) as f64 / n as f64;
        let w = wp.get(key).copied().unwrap_or(0) as f64 / n as f64;
        let p = (e + w) / 2.0;
        let limit = (5.0 * (2.0 * p * (1.0 - p) / n as f64).sqrt()).max(0.03);
        assert!(
            (e - w).abs() <= limit,
            "{}: {} {}: {key} envoy {e:.3} vs mesh-waypoint {w:.3} (limit {limit:.3}); \
             envoy {envoy:?}, mesh-waypoint {wp:?}",
            s.name,
            probe.host,
            probe.path
        );
    }
}

#[test]
fn replies_are_keyed_by_pod_redirect_or_status() {
    let pod = || Some("reviews-v1.default".to_string());
    let to = || Some("https://a.example.com/".to_string());
    assert_eq!(reply_key(200, pod(), None), "reviews-v1.default");
    assert_eq!(
        reply_key(301, None, to()),
        "status 301 https://a.example.com/"
    );
    assert_eq!(reply_key(404, pod(), None), "status 404");
}

#[test]
fn statistical_bounds_reject_a_wrong_split() {
    // 400 samples: 30% ± 11.5%; a 50/50 split is caught, 33% is not.
    assert!((0.5f64 - 0.3).abs() > bound(0.3, SPLIT_SAMPLES));
    assert!((0.33f64 - 0.3).abs() <= bound(0.3, SPLIT_SAMPLES));
    assert!((bound(0.8, 400) - 0.1).abs() < 1e-9);
}
