//! ServiceEntries served over the workload xDS: the control plane's gRPC
//! server in process on 127.0.0.1:0, the state loaded from YAML by the
//! real source, read by the real `mesh-xds` client.
use std::{sync::Arc, time::Duration};

use mesh_control::{
    serve::{self, ConnectedProxies, CsrSigner, ServerOptions},
    source::{load_files, SourceConfig},
};
use mesh_testkit::{eventually_watch, holds};
use mesh_xds::{proto::istio_workload::TunnelProtocol, Backoff, XdsClient, XdsClientConfig};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
};

/// How long any one step may take.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct NoSigner;

impl CsrSigner for NoSigner {
    fn sign(&self, _csr_pem: &str, _ttl: Duration) -> Result<Vec<String>, String> {
        Err("no CA in this test".into())
    }
}

const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {nodeName: node-1}
status: {podIP: 10.244.1.7}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: googleapis, namespace: shop}
spec:
  hosts: [www.googleapis.com]
  exportTo: ["."]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: shop}
spec:
  hosts: [legacy.example.com]
  addresses: [192.0.2.10]
  ports: [{number: 8080, name: http, targetPort: 80}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.5}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  ports: [{number: 5432, name: pg}]
  resolution: STATIC
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: anything, namespace: shop}
spec:
  hosts: ["*.example.org"]
  ports: [{number: 443, name: tls, protocol: TLS}]
"#;

#[tokio::test]
async fn service_entries_reach_the_agents() {
    let snapshot = load_files(
        &[("se.yaml".to_string(), YAML.to_string())],
        &SourceConfig::default(),
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let std::net::IpAddr::V4(vip) = snapshot.state.services["shop/www.googleapis.com"].vips[0]
    else {
        panic!("an IPv4 VIP");
    };

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_state, rx) = watch::channel(Arc::new(snapshot.state));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve_listener(
        listener,
        None,
        rx,
        Arc::new(NoSigner),
        Arc::new(ConnectedProxies::new()),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut cfg = XdsClientConfig::new(format!("http://{addr}"), "node-1");
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (handle, mut updates) = XdsClient::spawn(cfg);
    let snap = eventually_watch("the entries' resources", LIMIT, &mut updates, |s| {
        holds(s.connected && s.services().count() == 4, s)
    })
    .await;

    // DNS: a VIP from 240.240.0.0/16 and one workload to resolve.
    let google = snap.service("shop/www.googleapis.com").expect("service");
    assert_eq!(google.addresses[0].address, vip.octets());
    assert_eq!(google.addresses[0].address[..2], [240, 240]);
    assert_eq!(google.export_to, ["shop"]);
    assert!(!google.passthrough);
    let uid = "Kubernetes/networking.istio.io/ServiceEntry/shop/googleapis/www.googleapis.com";
    let w = snap.workload(uid).expect("hostname workload");
    assert_eq!(w.hostname, "www.googleapis.com");
    assert!(w.addresses.is_empty());
    assert_eq!(w.tunnel_protocol, TunnelProtocol::None as i32);
    let mut ports: Vec<_> = w.services["shop/www.googleapis.com"]
        .ports
        .iter()
        .map(|p| (p.service_port, p.target_port))
        .collect();
    ports.sort();
    assert_eq!(ports, [(80, 80), (443, 443)]);

    // STATIC: the written address, an IP endpoint.
    let legacy = snap.service("shop/legacy.example.com").expect("service");
    assert_eq!(legacy.addresses[0].address, [192, 0, 2, 10]);
    let w = snap
        .workload("Kubernetes/networking.istio.io/ServiceEntry/shop/legacy/203.0.113.5")
        .expect("endpoint");
    assert_eq!(w.addresses, [vec![203, 0, 113, 5]]);
    assert_eq!(
        w.services["shop/legacy.example.com"].ports[0].target_port,
        80
    );

    // workloadSelector: the pod lists the entry's service.
    let pod = snap.workload("Kubernetes//Pod/shop/db-0").expect("pod");
    assert!(pod.services.contains_key("shop/db.internal"));

    // NONE: passthrough, no address.
    let any = snap.service("shop/*.example.org").expect("service");
    assert!(any.passthrough && any.addresses.is_empty());

    bounded("client stop", handle.stop()).await;
    let _ = stop.send(());
    bounded("server stop", server).await.unwrap().unwrap();
}
