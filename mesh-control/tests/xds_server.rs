//! The control plane's gRPC server, in process on 127.0.0.1:0, against the
//! real `mesh-xds` client and raw Delta ADS streams.
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use mesh_control::{
    model::{MeshState, MtlsMode, Node, PeerAuthentication, Service, Workload},
    serve::{self, ConnectedProxies, CsrSigner, ServerOptions},
};
use mesh_xds::{
    proto::{
        envoy_core,
        envoy_discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse},
        google_rpc,
        istio_ca::{
            istio_certificate_service_client::IstioCertificateServiceClient,
            IstioCertificateRequest,
        },
        istio_workload::TunnelProtocol,
    },
    Backoff, XdsClient, XdsClientConfig, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};
mod raw_ads;
use mesh_testkit::{eventually_async, eventually_watch, holds};
use raw_ads::{bounded, RawStream, LIMIT};

struct FakeSigner;

impl CsrSigner for FakeSigner {
    fn sign(&self, csr_pem: &str, ttl: Duration) -> Result<Vec<String>, String> {
        Ok(vec![
            format!("leaf for {} bytes, {}s", csr_pem.len(), ttl.as_secs()),
            "root".into(),
        ])
    }
}

fn pod(name: &str, ip: &str) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/shop/{name}"),
        name: name.into(),
        namespace: "shop".into(),
        service_account: "web".into(),
        ips: vec![ip.parse().unwrap()],
        node: "node-1".into(),
        labels: BTreeMap::from([("app".into(), "web".into())]),
        mesh: true,
        services: BTreeMap::from([(
            "shop/web.shop.svc.cluster.local".into(),
            BTreeMap::from([(80, 8080)]),
        )]),
        probe_ports: vec![],
    }
}

fn mesh() -> MeshState {
    let mut s = MeshState {
        trust_domain: "cluster.local".into(),
        ..Default::default()
    };
    for w in [pod("web-1", "10.244.1.5"), pod("web-2", "10.244.1.6")] {
        s.workloads.insert(w.uid.clone(), w);
    }
    s.services.insert(
        "shop/web".into(),
        Service {
            name: "web".into(),
            namespace: "shop".into(),
            hostname: "web.shop.svc.cluster.local".into(),
            vips: vec!["10.96.0.20".parse().unwrap()],
            ports: BTreeMap::from([(80, 8080)]),
            ..Default::default()
        },
    );
    s.nodes.insert(
        "node-1".into(),
        Node {
            name: "node-1".into(),
            address: "172.18.0.2".parse().unwrap(),
        },
    );
    s.peer_authentications.push(PeerAuthentication {
        name: "default".into(),
        namespace: "istio-system".into(),
        selector: BTreeMap::new(),
        mode: MtlsMode::Strict,
    });
    s
}

struct Running {
    addr: SocketAddr,
    state: watch::Sender<Arc<MeshState>>,
    proxies: Arc<ConnectedProxies>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(initial: MeshState) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (state, rx) = watch::channel(Arc::new(initial));
    let proxies = Arc::new(ConnectedProxies::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve_listener(
        listener,
        None,
        rx,
        Arc::new(FakeSigner),
        proxies.clone(),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        state,
        proxies,
        stop: Some(stop),
        task,
    }
}

fn client_config(addr: SocketAddr, node: &str) -> XdsClientConfig {
    let mut cfg = XdsClientConfig::new(format!("http://{addr}"), node);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    cfg
}

#[tokio::test]
async fn client_gets_state_and_changes() {
    let server = start(mesh()).await;
    let (handle, mut rx) = XdsClient::spawn(client_config(server.addr, "node-1"));

    let snap = eventually_watch("initial snapshot", LIMIT, &mut rx, |s| {
        holds(
            s.connected && s.synced.len() == 2 && s.workloads().count() == 2,
            s,
        )
    })
    .await;
    assert_eq!(snap.services().count(), 1);
    let w = snap.workload("Kubernetes//Pod/shop/web-1").expect("web-1");
    assert_eq!(w.tunnel_protocol, TunnelProtocol::Hbone as i32);
    assert_eq!(w.addresses, vec![vec![10, 244, 1, 5]]);
    assert_eq!(
        w.authorization_policies,
        ["istio-system/istio_converted_static_strict"]
    );
    // One network: HBONE goes to the pod's own address, so no gateway
    // (istiod sets one only for another network).
    assert_eq!(w.network_gateway, None);
    let svc = snap
        .service("shop/web.shop.svc.cluster.local")
        .expect("service");
    assert_eq!(svc.addresses[0].address, vec![10, 96, 0, 20]);
    assert!(snap
        .authorization("istio-system/istio_converted_static_strict")
        .is_some());

    // Add one workload, remove another.
    let mut next = mesh();
    next.workloads.remove("Kubernetes//Pod/shop/web-1");
    let w3 = pod("web-3", "10.244.1.7");
    next.workloads.insert(w3.uid.clone(), w3);
    let before = snap
        .get(ADDRESS_TYPE_URL, "Kubernetes//Pod/shop/web-2")
        .unwrap()
        .clone();
    server.state.send_replace(Arc::new(next));
    let snap = eventually_watch("change", LIMIT, &mut rx, |s| {
        holds(s.workload("Kubernetes//Pod/shop/web-3").is_some(), s)
    })
    .await;
    assert!(snap.workload("Kubernetes//Pod/shop/web-1").is_none());
    assert_eq!(snap.workloads().count(), 2);
    assert_eq!(
        snap.get(ADDRESS_TYPE_URL, "Kubernetes//Pod/shop/web-2"),
        Some(&before),
        "unchanged"
    );
    assert!(snap.connected);

    // The registry saw the node, and both types ACKed at the latest version.
    eventually_async("proxy status acked", LIMIT, || async {
        let p = server.proxies.by_node("node-1");
        let acked = p.len() == 1
            && p[0].types.len() == 2
            && p[0].types.values().all(|t| t.acked)
            && p[0].types[ADDRESS_TYPE_URL].last_sent_version
                == server.proxies.server_version().to_string();
        holds(acked, &p)
    })
    .await;
    let p = &server.proxies.list()[0];
    assert_eq!(p.types[ADDRESS_TYPE_URL].resources, 3);
    assert!(p.types.values().all(|t| t.last_nack.is_none()));
    assert!(p.peer.is_some());

    // A state change that changes no resource sends nothing.
    let acked = server.proxies.list()[0].types[ADDRESS_TYPE_URL]
        .last_sent_nonce
        .clone();
    let evaluated = server.proxies.list()[0].evaluated_updates;
    let mut same = (**server.state.borrow()).clone();
    same.workloads.values_mut().for_each(|w| {
        w.labels.insert("unrelated".into(), "x".into());
    });
    server.state.send_replace(Arc::new(same));
    eventually_async("the change evaluated for the proxy", LIMIT, || async {
        let p = server.proxies.list();
        holds(p[0].evaluated_updates > evaluated, &p)
    })
    .await;
    assert_eq!(
        server.proxies.list()[0].types[ADDRESS_TYPE_URL].last_sent_nonce,
        acked
    );

    bounded("client stop", handle.stop()).await;
    eventually_async("stream gone from registry", LIMIT, || async {
        server.proxies.is_empty()
    })
    .await;
}

#[tokio::test]
async fn ca_returns_the_signer_chain() {
    let server = start(MeshState::default()).await;
    let mut ca = bounded(
        "connect",
        IstioCertificateServiceClient::connect(format!("http://{}", server.addr)),
    )
    .await
    .unwrap();
    let req = IstioCertificateRequest {
        csr: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        validity_duration: 0,
        metadata: None,
    };
    let resp = bounded("create", ca.create_certificate(req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.cert_chain, ["leaf for 35 bytes, 86400s", "root"]);
    let req = IstioCertificateRequest {
        csr: "x".into(),
        validity_duration: 600,
        metadata: None,
    };
    let resp = bounded("create", ca.create_certificate(req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.cert_chain[0], "leaf for 1 bytes, 600s");
}

fn subscribe(node: Option<&str>, initial: HashMap<String, String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node.map(|id| envoy_core::Node {
            id: id.into(),
            ..Default::default()
        }),
        type_url: ADDRESS_TYPE_URL.into(),
        initial_resource_versions: initial,
        ..Default::default()
    }
}

fn names(resp: &DeltaDiscoveryResponse) -> Vec<&str> {
    let mut n: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn initial_resource_versions_and_nack() {
    let server = start(mesh()).await;

    // First stream: learn the versions.
    let mut first = RawStream::open(server.addr).await;
    first.send(subscribe(Some("raw"), HashMap::new())).await;
    let full = first.recv().await;
    assert_eq!(
        names(&full),
        [
            "Kubernetes//Pod/shop/web-1",
            "Kubernetes//Pod/shop/web-2",
            "shop/web.shop.svc.cluster.local"
        ]
    );
    assert!(full.removed_resources.is_empty());
    let versions: HashMap<String, String> = full
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(first);

    // Reconnect holding: web-1 current, web-2 stale, and a pod that is gone.
    let mut initial = HashMap::new();
    initial.insert(
        "Kubernetes//Pod/shop/web-1".to_string(),
        versions["Kubernetes//Pod/shop/web-1"].clone(),
    );
    initial.insert(
        "Kubernetes//Pod/shop/web-2".to_string(),
        "stale".to_string(),
    );
    initial.insert("Kubernetes//Pod/shop/gone".to_string(), "v0".to_string());
    let mut s = RawStream::open(server.addr).await;
    s.send(subscribe(Some("raw"), initial)).await;
    let resp = s.recv().await;
    assert_eq!(
        names(&resp),
        [
            "Kubernetes//Pod/shop/web-2",
            "shop/web.shop.svc.cluster.local"
        ]
    );
    assert_eq!(resp.removed_resources, ["Kubernetes//Pod/shop/gone"]);

    // NACK it: recorded, and what it carried is sent again on the next change.
    let nack = DeltaDiscoveryRequest {
        type_url: ADDRESS_TYPE_URL.into(),
        response_nonce: resp.nonce.clone(),
        error_detail: Some(google_rpc::Status {
            code: 3,
            message: "web-2 is bad".into(),
            details: vec![],
        }),
        ..Default::default()
    };
    s.send(nack).await;
    eventually_async("nack recorded", LIMIT, || async {
        server.proxies.by_node("raw").iter().any(|p| {
            p.types
                .get(ADDRESS_TYPE_URL)
                .and_then(|t| t.last_nack.as_ref())
                .is_some_and(|n| n.message == "web-2 is bad" && n.nonce == resp.nonce)
        })
    })
    .await;
    let status = &server.proxies.by_node("raw")[0].types[ADDRESS_TYPE_URL];
    assert!(!status.acked);

    let mut next = mesh();
    let w3 = pod("web-3", "10.244.1.7");
    next.workloads.insert(w3.uid.clone(), w3);
    server.state.send_replace(Arc::new(next));
    // The new resource first, then each of the NACKed response's alone, so
    // a NACK would tell which one is bad.
    let resp = s.recv().await;
    assert_eq!(names(&resp), ["Kubernetes//Pod/shop/web-3"]);
    // The removal of "gone" was NACKed too, so it is repeated.
    assert_eq!(resp.removed_resources, ["Kubernetes//Pod/shop/gone"]);
    let mut alone = vec![];
    for resp in [resp, s.recv().await, s.recv().await] {
        alone.extend(names(&resp).into_iter().map(String::from));
        s.send(DeltaDiscoveryRequest {
            type_url: ADDRESS_TYPE_URL.into(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        })
        .await;
    }
    assert_eq!(
        alone[1..],
        [
            "Kubernetes//Pod/shop/web-2",
            "shop/web.shop.svc.cluster.local"
        ]
    );
    eventually_async("ack recorded", LIMIT, || async {
        server
            .proxies
            .by_node("raw")
            .iter()
            .any(|p| p.types.get(ADDRESS_TYPE_URL).is_some_and(|t| t.acked))
    })
    .await;

    // Authorization subscription on the same stream, wildcard by "*".
    s.send(DeltaDiscoveryRequest {
        type_url: AUTHORIZATION_TYPE_URL.into(),
        resource_names_subscribe: vec!["*".into()],
        ..Default::default()
    })
    .await;
    let resp = s.recv().await;
    assert_eq!(resp.type_url, AUTHORIZATION_TYPE_URL);
    assert_eq!(names(&resp), ["istio-system/istio_converted_static_strict"]);
}

#[tokio::test]
async fn empty_first_response_and_shutdown() {
    let mut server = start(MeshState::default()).await;
    let (handle, mut rx) = XdsClient::spawn(client_config(server.addr, "node-9"));
    // An empty mesh still answers each subscription, so the client is synced.
    let snap = eventually_watch("synced", LIMIT, &mut rx, |s| {
        holds(s.connected && s.synced.len() == 2, s)
    })
    .await;
    assert_eq!(snap.workloads().count(), 0);

    let _ = server.stop.take().unwrap().send(());
    bounded("server stops", server.task).await.unwrap().unwrap();
    let snap = eventually_watch("disconnected", LIMIT, &mut rx, |s| holds(!s.connected, s)).await;
    assert!(
        snap.last_error
            .as_deref()
            .unwrap_or("")
            .contains("shutting down"),
        "{:?}",
        snap.last_error
    );
    bounded("client stop", handle.stop()).await;
}

#[tokio::test]
async fn serves_over_tls() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = CertificateParams::new(vec!["mesh-control.mesh-system.svc".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();

    let certs = mesh_xds::transport::parse_certs(cert.pem().as_bytes(), "server").unwrap();
    let key = mesh_xds::transport::parse_key(key.serialize_pem().as_bytes()).unwrap();
    let mut tls =
        rustls::ServerConfig::builder_with_provider(mesh_xds::transport::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_state, rx) = watch::channel(Arc::new(mesh()));
    let proxies = Arc::new(ConnectedProxies::new());
    let server = tokio::spawn(serve::serve_listener(
        listener,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
        rx,
        Arc::new(FakeSigner),
        proxies.clone(),
        ServerOptions::default(),
        std::future::pending(),
    ));

    let mut cfg = client_config(addr, "node-tls");
    cfg.endpoint = format!("https://{addr}");
    cfg.tls = Some(mesh_xds::XdsTls {
        root_pem: ca_cert.pem().into_bytes(),
        client_cert: None,
        server_name: Some("mesh-control.mesh-system.svc".into()),
    });
    let (handle, mut rx) = XdsClient::spawn(cfg);
    let snap = eventually_watch("snapshot over TLS", LIMIT, &mut rx, |s| {
        holds(s.workloads().count() == 2, s)
    })
    .await;
    assert!(snap.connected);
    eventually_async("registry has the TLS peer", LIMIT, || async {
        proxies
            .by_node("node-tls")
            .first()
            .is_some_and(|p| p.peer.is_some())
    })
    .await;
    bounded("client stop", handle.stop()).await;
    server.abort();
}
