//! Waypoint config over Delta ADS, end to end in process: a directory of
//! YAML (two ambient namespaces each with a waypoint, versioned reviews
//! pods, seed VirtualService 002-02 and DestinationRule 003-04 unmodified)
//! is loaded by the real source and served by the real ADS server; real
//! `mesh_xds` clients connect as waypoints (and as an agent) and we check
//! what each one receives.
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use mesh_control::{
    serve::{self, ConnectedProxies, ServerOptions},
    source::{load_directory, SourceConfig},
};
use mesh_xds::{
    proto::{
        envoy_endpoint::lb_endpoint::HostIdentifier,
        envoy_route::{route::Action, route_action::ClusterSpecifier},
        istio_workload::gateway_address,
    },
    Backoff, XdsClient, XdsClientConfig, XdsResource, XdsSnapshot, ADDRESS_TYPE_URL,
    CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use tokio::{net::TcpListener, sync::watch};

mod xds_support;

use xds_support::{bounded, seed, NoSigner};

fn mesh_yaml() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 172.18.0.2}]}\n",
    );
    for (i, ns) in ["tutorial", "default"].iter().enumerate() {
        let n = i + 1;
        out.push_str(&format!(
            r#"---
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: wp, namespace: {ns}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: wp-0
  namespace: {ns}
  labels: {{gateway.networking.k8s.io/gateway-name: wp}}
spec: {{nodeName: node-1, serviceAccountName: wp}}
status: {{podIP: 10.244.{n}.100}}
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: {ns}}}
spec:
  clusterIP: 10.96.{n}.1
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080, targetPort: 9081}}]
"#
        ));
        for v in 1..=3 {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: reviews-v{v}\n  namespace: {ns}\n  labels: {{app: reviews, version: v{v}}}\nspec: {{nodeName: node-1, serviceAccountName: reviews}}\nstatus: {{podIP: 10.244.{n}.{v}}}\n"
            ));
        }
    }
    out
}

/// The subsets 002-02 names, for the tutorial namespace (003-04 itself
/// has no namespace: it lands in `default`).
const TUTORIAL_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: tutorial}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    state: watch::Sender<Arc<mesh_control::model::MeshState>>,
}

impl Server {
    /// Reloads the directory into the served state, as the watcher does.
    fn reload(&self) {
        let snapshot = load_directory(self.dir.path(), &SourceConfig::default()).unwrap();
        self.state.send_replace(Arc::new(snapshot.state));
    }
}

/// Serves the test directory; the state stays served while the returned
/// `Server` (its directory and state sender) lives.
async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("00-mesh.yaml", mesh_yaml()),
        ("10-dr.yaml", TUTORIAL_DR.to_string()),
        ("20-002-02.yaml", seed("002-02")),
        ("30-003-04.yaml", seed("003-04")),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let snapshot = load_directory(dir.path(), &SourceConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(Arc::new(snapshot.state));
    tokio::spawn(async move {
        serve::serve_listener(
            listener,
            None,
            rx,
            Arc::new(NoSigner),
            Arc::new(ConnectedProxies::new()),
            ServerOptions::default(),
            std::future::pending(),
        )
        .await
    });
    Server {
        addr,
        dir,
        state: tx,
    }
}

const ENVOY_TYPES: [&str; 4] = [
    LISTENER_TYPE_URL,
    ROUTE_TYPE_URL,
    CLUSTER_TYPE_URL,
    ENDPOINT_TYPE_URL,
];

fn waypoint_config(addr: SocketAddr, node: &str, meta: Option<(&str, &str)>) -> XdsClientConfig {
    let mut cfg = XdsClientConfig::new(format!("http://{addr}"), node);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    cfg.type_urls = ENVOY_TYPES.iter().map(ToString::to_string).collect();
    cfg.type_urls.push(ADDRESS_TYPE_URL.to_string());
    if let Some((ns, name)) = meta {
        cfg.node_metadata = BTreeMap::from([
            ("NAMESPACE".to_string(), ns.to_string()),
            ("WAYPOINT".to_string(), name.to_string()),
        ]);
    }
    cfg
}

async fn synced(cfg: XdsClientConfig) -> (mesh_xds::XdsHandle, Arc<XdsSnapshot>) {
    let types = cfg.type_urls.clone();
    let (handle, mut rx) = XdsClient::spawn(cfg);
    let snap = bounded(
        "all types received",
        rx.wait_for(|s| types.iter().all(|t| s.synced.contains(t))),
    )
    .await
    .unwrap()
    .clone();
    (handle, snap)
}

fn names(s: &XdsSnapshot, type_url: &str) -> Vec<String> {
    s.resources(type_url).map(|(n, _)| n.to_string()).collect()
}

#[tokio::test]
async fn waypoints_get_their_own_listener_and_the_global_clusters() {
    let server = start_server().await;
    let addr = server.addr;
    let (_h, snap) = synced(waypoint_config(
        addr,
        "waypoint~10.244.1.100~wp-0.tutorial~tutorial.svc.cluster.local",
        Some(("tutorial", "wp")),
    ))
    .await;

    assert_eq!(names(&snap, LISTENER_TYPE_URL), ["waypoint/tutorial/wp"]);
    assert_eq!(names(&snap, ROUTE_TYPE_URL), ["waypoint/tutorial/wp"]);
    let XdsResource::RouteConfiguration(rc) = snap
        .get(ROUTE_TYPE_URL, "waypoint/tutorial/wp")
        .unwrap()
        .resource
        .as_ref()
    else {
        panic!("not a RouteConfiguration");
    };
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.name, "reviews.tutorial.svc.cluster.local:9080");
    assert!(vh.domains.contains(&"10.96.1.1:9080".to_string()));
    let Some(Action::Route(action)) = &vh.routes[0].action else {
        panic!("no route action");
    };
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action.cluster_specifier else {
        panic!("not weighted: {action:?}");
    };
    let weights: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(
        weights,
        [
            ("outbound|9080|v1|reviews.tutorial.svc.cluster.local", 30),
            ("outbound|9080|v2|reviews.tutorial.svc.cluster.local", 70),
        ]
    );

    // Clusters and endpoints are global: both namespaces', every subset.
    assert_eq!(
        names(&snap, CLUSTER_TYPE_URL),
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v1|reviews.tutorial.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.tutorial.svc.cluster.local",
            "outbound|9080|v3|reviews.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound|9080||reviews.tutorial.svc.cluster.local",
        ]
    );
    let endpoints = |cluster: &str| -> Vec<String> {
        let XdsResource::ClusterLoadAssignment(cla) = snap
            .get(ENDPOINT_TYPE_URL, cluster)
            .unwrap()
            .resource
            .as_ref()
        else {
            panic!("not a CLA");
        };
        cla.endpoints[0]
            .lb_endpoints
            .iter()
            .map(|e| {
                let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                    panic!("no endpoint");
                };
                let Some(mesh_xds::proto::envoy_core::address::Address::SocketAddress(sa)) =
                    &ep.address.as_ref().unwrap().address
                else {
                    panic!("no socket address");
                };
                let Some(mesh_xds::proto::envoy_core::socket_address::PortSpecifier::PortValue(
                    port,
                )) = sa.port_specifier
                else {
                    panic!("no port");
                };
                format!("{}:{port}", sa.address)
            })
            .collect()
    };
    assert_eq!(
        endpoints("outbound|9080|v1|reviews.tutorial.svc.cluster.local"),
        ["10.244.1.1:9081"]
    );
    assert_eq!(
        endpoints("outbound|9080|v2|reviews.tutorial.svc.cluster.local"),
        ["10.244.1.2:9081"]
    );
    assert_eq!(
        endpoints("outbound|9080|v3|reviews.default.svc.cluster.local"),
        ["10.244.2.3:9081"]
    );
    assert_eq!(
        endpoints("outbound|9080||reviews.tutorial.svc.cluster.local").len(),
        3
    );

    // The Address xDS names the waypoint on the service.
    let svc = snap
        .service("tutorial/reviews.tutorial.svc.cluster.local")
        .unwrap();
    let wp = svc.waypoint.clone().unwrap();
    assert_eq!(wp.hbone_mtls_port, 15008);
    assert_eq!(
        wp.destination,
        Some(gateway_address::Destination::Address(
            mesh_xds::proto::istio_workload::NetworkAddress {
                network: String::new(),
                address: vec![10, 244, 1, 100],
                ..Default::default()
            }
        ))
    );
    let wp_pod = snap.workload("Kubernetes//Pod/tutorial/wp-0").unwrap();
    assert_eq!(wp_pod.service_account, "wp");

    // A second waypoint gets only its own listener and routes.
    let (_h2, other) = synced(waypoint_config(
        addr,
        "waypoint~10.244.2.100~wp-0.default~default.svc.cluster.local",
        Some(("default", "wp")),
    ))
    .await;
    assert_eq!(names(&other, LISTENER_TYPE_URL), ["waypoint/default/wp"]);
    assert_eq!(names(&other, ROUTE_TYPE_URL), ["waypoint/default/wp"]);
    assert_eq!(names(&other, CLUSTER_TYPE_URL).len(), 7);
}

#[tokio::test]
async fn a_node_id_alone_identifies_a_waypoint_and_agents_get_no_envoy_types() {
    let server = start_server().await;
    let addr = server.addr;
    // A stock Envoy (no metadata), named by its pod.
    let (_h, snap) = synced(waypoint_config(
        addr,
        "waypoint~10.244.2.100~wp-0.default~default.svc.cluster.local",
        None,
    ))
    .await;
    assert_eq!(names(&snap, LISTENER_TYPE_URL), ["waypoint/default/wp"]);

    // Unknown to the mesh: no listener at all.
    let (_h, stranger) = synced(waypoint_config(addr, "sidecar~10.0.0.1~x.y~y", None)).await;
    assert!(names(&stranger, LISTENER_TYPE_URL).is_empty());
    assert!(names(&stranger, ROUTE_TYPE_URL).is_empty());
    assert_eq!(names(&stranger, CLUSTER_TYPE_URL).len(), 7);

    // An agent subscribes to Address and Authorization only.
    let mut cfg = XdsClientConfig::new(format!("http://{addr}"), "node-1");
    cfg.backoff.initial = Duration::from_millis(20);
    let (_h, agent) = synced(cfg).await;
    for t in ENVOY_TYPES {
        assert_eq!(agent.resources(t).count(), 0, "{t}");
    }
    assert!(agent.resources(ADDRESS_TYPE_URL).count() > 0);
}

#[tokio::test]
async fn a_changed_virtual_service_reaches_the_waypoint() {
    let server = start_server().await;
    let (_h, mut rx) = XdsClient::spawn(waypoint_config(
        server.addr,
        "waypoint~10.244.1.100~wp-0.tutorial~tutorial.svc.cluster.local",
        Some(("tutorial", "wp")),
    ));
    let weights = |s: &XdsSnapshot| -> Option<Vec<u32>> {
        let XdsResource::RouteConfiguration(rc) = s
            .get(ROUTE_TYPE_URL, "waypoint/tutorial/wp")?
            .resource
            .as_ref()
        else {
            return None;
        };
        match &rc.virtual_hosts.first()?.routes.first()?.action {
            Some(Action::Route(a)) => match &a.cluster_specifier {
                Some(ClusterSpecifier::WeightedClusters(w)) => Some(
                    w.clusters
                        .iter()
                        .map(|c| c.weight.map_or(0, |w| w.value))
                        .collect(),
                ),
                _ => None,
            },
            _ => None,
        }
    };
    bounded("30/70", rx.wait_for(|s| weights(s) == Some(vec![30, 70])))
        .await
        .unwrap();
    let seed = seed("002-02")
        .replace("weight: 30", "weight: 90")
        .replace("weight: 70", "weight: 10");
    std::fs::write(server.dir.path().join("20-002-02.yaml"), seed).unwrap();
    server.reload();
    bounded(
        "90/10 after the change",
        rx.wait_for(|s| weights(s) == Some(vec![90, 10])),
    )
    .await
    .unwrap();
}
