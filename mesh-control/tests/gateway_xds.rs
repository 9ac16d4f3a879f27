//! Ingress gateway config over Delta ADS, end to end in process
//! (docs/contracts/gateway-xds.md): the seed Gateways 000-01 (HTTP :80,
//! VirtualService bound to it and to mesh) and 003-01 (HTTPS SIMPLE with
//! file paths), unmodified, next to a small mesh with two gateway pods,
//! loaded by the real source and served by the real ADS server; real
//! `mesh_xds` clients connect as `router~` nodes and each receives only
//! the listeners and routes of the Gateways selecting its pod.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use envoy_types::pb::envoy::extensions::{
    filters::network::{
        http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, HttpConnectionManager,
        },
        tcp_proxy::v3::{tcp_proxy, TcpProxy},
    },
    transport_sockets::tls::v3::DownstreamTlsContext,
};
use mesh_control::{
    serve::{self, ConnectedProxies, ServerOptions},
    source::{load_directory, SourceConfig},
};
use mesh_xds::{
    proto::{
        envoy_listener::{filter, Listener},
        envoy_route::{route::Action, route_action::ClusterSpecifier, RouteConfiguration},
    },
    Backoff, XdsClient, XdsClientConfig, XdsResource, XdsSnapshot, CLUSTER_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use prost::Message as _;
use tokio::{net::TcpListener, sync::watch};

mod xds_support;

use xds_support::{bounded, seed, NoSigner};

const MESH: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {istio.io/dataplane-mode: ambient}
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  clusterIP: 10.96.0.7
  selector: {app: productpage}
  ports: [{name: http, port: 9080, targetPort: 9080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: productpage-v1
  namespace: default
  labels: {app: productpage, version: v1}
spec: {nodeName: node-1, serviceAccountName: productpage}
status: {podIP: 10.244.0.7}
---
apiVersion: v1
kind: Pod
metadata:
  name: ingress-0
  namespace: istio-system
  labels: {istio: ingressgateway}
spec: {nodeName: node-1, serviceAccountName: istio-ingressgateway}
status: {podIP: 10.244.8.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: edge-0
  namespace: default
  labels: {app: my-gateway-controller}
spec: {nodeName: node-1, serviceAccountName: edge}
status: {podIP: 10.244.8.2}
---
apiVersion: v1
kind: Pod
metadata:
  name: l4-0
  namespace: default
  labels: {app: l4-gateway}
spec: {nodeName: node-1, serviceAccountName: l4}
status: {podIP: 10.244.8.3}
"#;

/// A Gateway with a TCP server and a TLS PASSTHROUGH server, and the
/// VirtualService routing both.
const L4: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: l4, namespace: default}
spec:
  selector: {app: l4-gateway}
  servers:
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}
  - {port: {number: 443, name: tls, protocol: TLS}, hosts: ["*.example.com"], tls: {mode: PASSTHROUGH}}
  - {port: {number: 15443, name: auto, protocol: TLS}, hosts: ["*"], tls: {mode: AUTO_PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: l4, namespace: default}
spec:
  hosts: ["*"]
  gateways: [l4]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: productpage}}]
  tls:
  - match: [{sniHosts: [shop.example.com]}]
    route: [{destination: {host: productpage, port: {number: 9443}}}]
"#;

/// Serves the test directory while the returned guard lives.
async fn start_server() -> (
    std::net::SocketAddr,
    tempfile::TempDir,
    watch::Sender<Arc<mesh_control::model::MeshState>>,
) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("00-mesh.yaml", MESH.to_string()),
        ("10-000-01.yaml", seed("000-01")),
        ("20-003-01.yaml", seed("003-01")),
        ("30-l4.yaml", L4.to_string()),
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
    (addr, dir, tx)
}

const TYPES: [&str; 3] = [LISTENER_TYPE_URL, ROUTE_TYPE_URL, CLUSTER_TYPE_URL];

async fn router(addr: std::net::SocketAddr, ip: &str, pod: &str, ns: &str) -> Arc<XdsSnapshot> {
    let mut cfg = XdsClientConfig::new(
        format!("http://{addr}"),
        format!("router~{ip}~{pod}.{ns}~{ns}.svc.cluster.local"),
    );
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    cfg.type_urls = TYPES.iter().map(ToString::to_string).collect();
    cfg.node_metadata = BTreeMap::from([
        ("NAMESPACE".to_string(), ns.to_string()),
        ("NAME".to_string(), pod.to_string()),
    ]);
    let (handle, mut rx) = XdsClient::spawn(cfg);
    let snap = bounded(
        "all types received",
        rx.wait_for(|s| TYPES.iter().all(|t| s.synced.contains(*t))),
    )
    .await
    .unwrap()
    .clone();
    drop(handle);
    snap
}

fn names(s: &XdsSnapshot, type_url: &str) -> Vec<String> {
    s.resources(type_url).map(|(n, _)| n.to_string()).collect()
}

fn listener<'s>(s: &'s XdsSnapshot, name: &str) -> &'s Listener {
    match s.get(LISTENER_TYPE_URL, name).unwrap().resource.as_ref() {
        XdsResource::Listener(l) => l,
        other => panic!("not a Listener: {other:?}"),
    }
}

fn route_config<'s>(s: &'s XdsSnapshot, name: &str) -> &'s RouteConfiguration {
    match s.get(ROUTE_TYPE_URL, name).unwrap().resource.as_ref() {
        XdsResource::RouteConfiguration(rc) => rc,
        other => panic!("not a RouteConfiguration: {other:?}"),
    }
}

fn rds_name(l: &Listener, chain: usize) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[chain].filters[0].config_type
    else {
        panic!("no typed config");
    };
    match HttpConnectionManager::decode(any.value.as_slice())
        .unwrap()
        .route_specifier
    {
        Some(RouteSpecifier::Rds(rds)) => rds.route_config_name,
        other => panic!("not RDS: {other:?}"),
    }
}

#[tokio::test]
async fn router_nodes_get_the_listeners_and_routes_of_their_own_gateways() {
    let (addr, _dir, _state) = start_server().await;

    let ingress = router(addr, "10.244.8.1", "ingress-0", "istio-system").await;
    assert_eq!(names(&ingress, LISTENER_TYPE_URL), ["0.0.0.0_80"]);
    assert_eq!(names(&ingress, ROUTE_TYPE_URL), ["http.80"]);
    let l = listener(&ingress, "0.0.0.0_80");
    assert_eq!(l.filter_chains.len(), 1);
    assert!(l.filter_chains[0].filter_chain_match.is_none());
    assert_eq!(rds_name(l, 0), "http.80");
    let rc = route_config(&ingress, "http.80");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(
        (vh.name.as_str(), vh.domains.clone()),
        ("*:80", vec!["*".to_string()])
    );
    assert_eq!(vh.routes.len(), 5);
    let Some(Action::Route(action)) = &vh.routes[0].action else {
        panic!("no route action");
    };
    let cluster = "outbound|9080||productpage.default.svc.cluster.local";
    assert_eq!(
        action.cluster_specifier,
        Some(ClusterSpecifier::Cluster(cluster.into()))
    );
    // The clusters are the global set: the route's cluster is served.
    assert!(names(&ingress, CLUSTER_TYPE_URL).contains(&cluster.to_string()));

    let edge = router(addr, "10.244.8.2", "edge-0", "default").await;
    assert_eq!(names(&edge, LISTENER_TYPE_URL), ["0.0.0.0_443"]);
    assert_eq!(
        names(&edge, ROUTE_TYPE_URL),
        ["https.443.https.ext-host-gwy.default"]
    );
    let l = listener(&edge, "0.0.0.0_443");
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        ["ext-host.example.com"]
    );
    assert_eq!(rds_name(l, 0), "https.443.https.ext-host-gwy.default");
    let ts = l.filter_chains[0].transport_socket.as_ref().unwrap();
    let Some(mesh_xds::proto::envoy_core::transport_socket::ConfigType::TypedConfig(any)) =
        &ts.config_type
    else {
        panic!("no TLS context");
    };
    let tls = DownstreamTlsContext::decode(any.value.as_slice()).unwrap();
    let cert = &tls.common_tls_context.unwrap().tls_certificates[0];
    assert_eq!(
        format!("{:?}", cert.certificate_chain),
        format!(
            "{:?}",
            Some(mesh_xds::proto::envoy_core::DataSource {
                specifier: Some(
                    mesh_xds::proto::envoy_core::data_source::Specifier::Filename(
                        "/tmp/tls.crt".into()
                    )
                ),
                ..Default::default()
            })
        )
    );

    // A router node whose pod no Gateway selects gets none.
    let nobody = router(addr, "10.244.0.7", "productpage-v1", "default").await;
    assert!(names(&nobody, LISTENER_TYPE_URL).is_empty());
    assert!(names(&nobody, ROUTE_TYPE_URL).is_empty());
    assert!(names(&nobody, CLUSTER_TYPE_URL).contains(&cluster.to_string()));
}

/// The cluster of chain `chain`'s `tcp_proxy`.
fn tcp_cluster(l: &Listener, chain: usize) -> String {
    let f = &l.filter_chains[chain].filters[0];
    assert_eq!(f.name, "envoy.filters.network.tcp_proxy");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed config");
    };
    match TcpProxy::decode(any.value.as_slice())
        .unwrap()
        .cluster_specifier
    {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("not one cluster: {other:?}"),
    }
}

#[tokio::test]
async fn a_router_node_gets_tcp_and_passthrough_listeners() {
    let (addr, _dir, _state) = start_server().await;
    let l4 = router(addr, "10.244.8.3", "l4-0", "default").await;
    // AUTO_PASSTHROUGH (15443) is not served; TCP and PASSTHROUGH have no routes.
    assert_eq!(
        names(&l4, LISTENER_TYPE_URL),
        ["0.0.0.0_443", "0.0.0.0_9000"]
    );
    assert!(names(&l4, ROUTE_TYPE_URL).is_empty());
    let tcp = listener(&l4, "0.0.0.0_9000");
    assert!(tcp.filter_chains[0].filter_chain_match.is_none());
    let cluster = "outbound|9080||productpage.default.svc.cluster.local";
    assert_eq!(tcp_cluster(tcp, 0), cluster);
    assert!(names(&l4, CLUSTER_TYPE_URL).contains(&cluster.to_string()));
    let pass = listener(&l4, "0.0.0.0_443");
    assert_eq!(
        pass.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    assert_eq!(pass.filter_chains.len(), 1);
    assert_eq!(
        pass.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        ["shop.example.com"]
    );
    assert!(pass.filter_chains[0].transport_socket.is_none());
    assert_eq!(
        tcp_cluster(pass, 0),
        "outbound|9443||productpage.default.svc.cluster.local"
    );
}
