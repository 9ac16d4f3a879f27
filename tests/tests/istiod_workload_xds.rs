//! Our agent under workload discovery shaped the way istiod shapes it: a
//! scripted Delta ADS server in the underlay (10.0.0.254:15110, the real
//! control plane still serves certificates on 15010) pushes the node's pods
//! with istiod's newer fields, a Service whose waypoint is a hostname, an
//! Address of a kind the agent does not know, and an AuthorizationPolicy
//! in istiod's form for `from.source.serviceAccounts` (`service_accounts`).
//! The agent must ACK both pushes, show the resolved waypoint and the
//! policy in `/config_dump`, and real connections between the pods must be
//! allowed or denied by the service-account rule. Needs root.
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_e2e::{agent::Agent, bins::Binaries, cluster::Cluster};
use mesh_testkit::try_eventually;
use mesh_xds::{
    proto::{
        envoy_discovery::{DeltaDiscoveryResponse, Resource},
        istio_security::{Action, Authorization, Clause, Match, Rule, Scope, ServiceAccountMatch},
        istio_workload::{
            address, gateway_address::Destination, load_balancing, Address, AppProtocol,
            GatewayAddress, LoadBalancing, Locality, NamespacedHostname, NetworkAddress, Port,
            PortList, Service, TunnelProtocol, Workload,
        },
        to_any, wkt,
    },
    test_ads::{self, ScriptedStream},
    ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};
use serde_json::Value;
use tokio::sync::oneshot;

const TAG: &str = "mwds";
const PORT: u16 = 9080;
const FAKE_ADS: &str = "10.0.0.254:15110";
const WAIT: Duration = Duration::from_secs(30);
const WAYPOINT_HOST: &str = "waypoint.default.svc.cluster.local";
/// A waypoint pod the fake control plane names (nobody runs it: the test
/// checks where the agent would send the traffic, not the waypoint).
const WAYPOINT_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 99, 9);

/// What the agent answered to each push: (type URL, nonce, NACK message).
type Answers = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// Plays istiod on one stream: pushes everything once the client has
/// subscribed, then records the client's answers until it goes away.
async fn script(mut stream: ScriptedStream, pushes: Vec<DeltaDiscoveryResponse>, answers: Answers) {
    let mut pushed = false;
    while let Ok(Some(r)) = stream.requests.message().await {
        if r.response_nonce.is_empty() {
            if !pushed {
                pushed = true;
                for p in &pushes {
                    if stream.responses.send(Ok(p.clone())).await.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        answers.lock().unwrap().push((
            r.type_url,
            r.response_nonce,
            r.error_detail.map(|e| e.message),
        ));
    }
}

fn ip_bytes(ip: Ipv4Addr) -> Vec<u8> {
    ip.octets().to_vec()
}

fn port(p: u16, app: AppProtocol) -> Port {
    Port {
        service_port: u32::from(p),
        target_port: u32::from(p),
        app_protocol: app as i32,
    }
}

fn waypoint_by_hostname() -> GatewayAddress {
    GatewayAddress {
        destination: Some(Destination::Hostname(NamespacedHostname {
            namespace: "default".into(),
            hostname: WAYPOINT_HOST.into(),
        })),
        hbone_mtls_port: 15008,
    }
}

/// A pod of the cluster as istiod publishes it (service account = pod
/// name, as the cluster's topology has it).
fn pod(c: &Cluster, name: &str, node: &str, services: &[&str]) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/default/{name}"),
        name: name.into(),
        namespace: "default".into(),
        addresses: vec![ip_bytes(c.pod(name).ip)],
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: name.into(),
        node: node.into(),
        cluster_id: "Kubernetes".into(),
        canonical_name: name.into(),
        canonical_revision: "latest".into(),
        workload_name: name.into(),
        services: services
            .iter()
            .map(|s| {
                (
                    format!("default/{s}"),
                    PortList {
                        ports: vec![port(PORT, AppProtocol::Http11)],
                    },
                )
            })
            .collect(),
        locality: Some(Locality {
            region: "lab".into(),
            zone: "lab-1".into(),
            subzone: String::new(),
        }),
        capacity: Some(wkt::UInt32Value { value: 1 }),
        ..Default::default()
    }
}

fn service(name: &str, vip: [u8; 4], p: u16) -> Service {
    Service {
        name: name.into(),
        namespace: "default".into(),
        hostname: format!("{name}.default.svc.cluster.local"),
        addresses: vec![NetworkAddress {
            network: String::new(),
            address: vip.to_vec(),
            length: None,
        }],
        ports: vec![port(p, AppProtocol::Http11)],
        ..Default::default()
    }
}

fn resource(type_url: &str, name: &str, value: Vec<u8>) -> Resource {
    Resource {
        name: name.into(),
        version: format!("istiod-{name}"),
        resource: Some(wkt::Any {
            type_url: type_url.into(),
            value,
        }),
        ..Default::default()
    }
}

fn address_resource(name: &str, kind: address::Type) -> Resource {
    let any = to_any(ADDRESS_TYPE_URL, &Address { r#type: Some(kind) });
    resource(ADDRESS_TYPE_URL, name, any.value)
}

/// The two pushes: every Address (pods, services, a waypoint, an unknown
/// kind), then the policy.
fn pushes(c: &Cluster) -> Vec<DeltaDiscoveryResponse> {
    let mut details = pod(
        c,
        "details",
        "node1",
        &["details.default.svc.cluster.local"],
    );
    details.authorization_policies = vec!["default/details-viewer".into()];
    // A workload-level waypoint on a pod the traffic below only leaves
    // from (traffic *to* it would go through that waypoint, which nobody
    // runs here).
    let mut productpage = pod(c, "productpage", "node1", &[]);
    productpage.waypoint = Some(waypoint_by_hostname());
    let waypoint = Workload {
        uid: "Kubernetes//Pod/default/waypoint-0".into(),
        name: "waypoint-0".into(),
        namespace: "default".into(),
        addresses: vec![ip_bytes(WAYPOINT_POD)],
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: "waypoint".into(),
        node: "elsewhere".into(),
        services: [(
            format!("default/{WAYPOINT_HOST}"),
            PortList {
                ports: vec![port(15008, AppProtocol::Unknown)],
            },
        )]
        .into(),
        ..Default::default()
    };
    let mut reviews = service("reviews", [10, 96, 7, 20], PORT);
    reviews.waypoint = Some(waypoint_by_hostname());
    reviews.load_balancing = Some(LoadBalancing {
        routing_preference: vec![load_balancing::Scope::Zone as i32],
        mode: load_balancing::Mode::Failover as i32,
        health_policy: load_balancing::HealthPolicy::OnlyHealthy as i32,
    });
    let mut workloads = vec![
        pod(c, "sleep", "node1", &[]),
        productpage,
        details,
        waypoint,
    ];
    let mut addresses: Vec<Resource> = workloads
        .drain(..)
        .map(|w| address_resource(&w.uid.clone(), address::Type::Workload(w)))
        .collect();
    for s in [
        service("details", [10, 96, 7, 40], PORT),
        service("waypoint", [10, 96, 7, 50], 15008),
        reviews,
    ] {
        let name = format!("default/{}", s.hostname);
        addresses.push(address_resource(&name, address::Type::Service(s)));
    }
    // An Address kind this agent does not know: oneof field 3.
    addresses.push(resource(
        ADDRESS_TYPE_URL,
        "default/some-future-kind",
        vec![3 << 3 | 2, 2, b'h', b'i'],
    ));
    let viewer = Authorization {
        name: "details-viewer".into(),
        namespace: "default".into(),
        scope: Scope::WorkloadSelector as i32,
        action: Action::Allow as i32,
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![Match {
                    service_accounts: vec![ServiceAccountMatch {
                        namespace: "default".into(),
                        service_account: "sleep".into(),
                    }],
                    ..Default::default()
                }],
            }],
        }],
        ..Default::default()
    };
    let policy = resource(
        AUTHORIZATION_TYPE_URL,
        "default/details-viewer",
        to_any(AUTHORIZATION_TYPE_URL, &viewer).value,
    );
    vec![
        DeltaDiscoveryResponse {
            type_url: ADDRESS_TYPE_URL.into(),
            nonce: "address-1".into(),
            resources: addresses,
            ..Default::default()
        },
        DeltaDiscoveryResponse {
            type_url: AUTHORIZATION_TYPE_URL.into(),
            nonce: "authz-1".into(),
            resources: vec![policy],
            ..Default::default()
        },
    ]
}

/// The scripted server, running on its own thread inside the underlay
/// namespace until dropped.
struct FakeIstiod {
    answers: Answers,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeIstiod {
    fn start(c: &Cluster) -> Self {
        let answers = Answers::default();
        let pushes = pushes(c);
        let recorded = Arc::clone(&answers);
        let netns = std::fs::File::open(c.underlay.path()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let addr: SocketAddr = FAKE_ADS.parse().unwrap();
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                let mut ads = test_ads::serve(listener);
                let _ = ready_tx.send(());
                let streams = async {
                    while let Some(stream) = ads.next_stream().await {
                        tokio::spawn(script(stream, pushes.clone(), Arc::clone(&recorded)));
                    }
                };
                // Stopping drops the runtime, and with it every open stream
                // (a graceful stop would wait for the agent to hang up).
                tokio::select! {
                    _ = streams => {}
                    _ = stopped => {}
                }
            });
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("fake istiod listening");
        FakeIstiod {
            answers,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for FakeIstiod {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn probe(c: &Cluster, from: &str) -> Value {
    let to = c.pod("details").addr(PORT).to_string();
    c.client(from, &["probe", "--to", &to, "--timeout-ms", "3000"])
        .unwrap()
}

#[test]
fn agent_accepts_istiod_shaped_workload_discovery() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["sleep", "productpage", "details"])],
    )
    .unwrap();
    // The real control plane signs certificates; workload discovery comes
    // from the scripted server.
    c.start_control(&[]).unwrap();
    let istiod = FakeIstiod::start(&c);
    let mut spec = c.agent_spec("node1", &[]);
    let xds = spec
        .extra_args
        .iter()
        .position(|a| a == "--xds-addr")
        .unwrap();
    let control = std::mem::replace(&mut spec.extra_args[xds + 1], format!("http://{FAKE_ADS}"));
    spec.extra_args.extend(["--ca-addr".into(), control]);
    let agent = Agent::start(spec).unwrap();
    for p in &c.node("node1").pods {
        agent.enroll(p, &[]).unwrap();
    }
    c.agents.insert("node1".into(), agent);
    c.serve("details", PORT, None).unwrap();
    c.wait_ready("node1", 3, &["sleep", "productpage", "details"])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.agent("node1").log_tail()));

    // Both pushes ACKed (an answer with the push's nonce and no error).
    let answers = try_eventually("the agent answers both pushes", WAIT, || {
        let got = istiod.answers.lock().unwrap().clone();
        if got.len() >= 2 {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .unwrap();
    for (type_url, nonce) in [
        (ADDRESS_TYPE_URL, "address-1"),
        (AUTHORIZATION_TYPE_URL, "authz-1"),
    ] {
        let answer = answers
            .iter()
            .find(|(t, _, _)| t == type_url)
            .unwrap_or_else(|| panic!("no answer for {type_url}: {answers:?}"));
        assert_eq!(answer.1, nonce, "{answers:?}");
        assert_eq!(answer.2, None, "{type_url} NACKed: {answers:?}");
    }

    // /config_dump: the waypoint hostname resolved to the waypoint pod, the
    // unknown kind counted, the policy in istiod's form.
    let dump = try_eventually("the policy in /config_dump", WAIT, || {
        let dump = c
            .agent("node1")
            .admin_json("/config_dump")
            .map_err(|e| e.to_string())?;
        let has_policy = dump["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "details-viewer"));
        if has_policy {
            Ok(dump)
        } else {
            Err(dump.to_string())
        }
    })
    .unwrap();
    assert_eq!(dump["skipped"]["addresses_of_unknown_kind"], 1, "{dump}");
    let reviews = dump["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["vip"] == format!("10.96.7.20:{PORT}"))
        .unwrap_or_else(|| panic!("no reviews VIP: {dump}"));
    assert_eq!(
        reviews["waypoint"]["name"],
        format!("default/{WAYPOINT_HOST}")
    );
    assert_eq!(
        reviews["waypoint"]["resolved"],
        format!("{WAYPOINT_POD}:15008")
    );
    assert_eq!(reviews["app_protocol"], "HTTP11");
    let workload = |uid: &str| {
        dump["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["uid"] == uid)
            .unwrap_or_else(|| panic!("no {uid}: {dump}"))
            .clone()
    };
    let productpage = workload("Kubernetes//Pod/default/productpage");
    assert_eq!(
        productpage["waypoint"]["resolved"],
        format!("{WAYPOINT_POD}:15008")
    );
    let details = workload("Kubernetes//Pod/default/details");
    assert_eq!(details["details"]["locality"]["zone"], "lab-1");
    let viewer = dump["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "details-viewer")
        .unwrap();
    assert_eq!(
        viewer["rules"][0]["clauses"][0]["matches"][0]["service_accounts"][0],
        serde_json::json!({"namespace": "default", "service_account": "sleep"})
    );

    // Real connections: default/sleep is allowed to details, productpage
    // (another service account) is not.
    let r = probe(&c, "sleep");
    assert_eq!(r["ok"], true, "sleep -> details should be allowed: {r}");
    let r = probe(&c, "productpage");
    assert_eq!(
        r["ok"], false,
        "productpage -> details should be denied: {r}"
    );
    assert_ne!(r["error_kind"], "PermissionDenied", "a proxy denial: {r}");
}
