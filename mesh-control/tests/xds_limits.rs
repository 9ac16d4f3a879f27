//! What one Delta ADS stream can cost the control plane, and what one bad
//! resource can cost a client: subscribed names are bounded, a NACKed
//! resource does not hold back later updates of other resources of its
//! type, and a push larger than a gRPC message is split. Raw streams
//! against the server in process on 127.0.0.1:0; every wait is bounded.
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use mesh_control::{
    model::{MeshState, Node, Workload},
    serve::{self, ConnectedProxies, CsrSigner, ServerOptions},
};
use mesh_xds::{
    proto::{
        envoy_core,
        envoy_discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse},
        google_rpc,
    },
    ADDRESS_TYPE_URL,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
};

mod raw_ads;
use mesh_testkit::{eventually_async, holds};
use raw_ads::{RawStream, LIMIT};

struct NoSigner;

impl CsrSigner for NoSigner {
    fn sign(&self, _: &str, _: Duration) -> Result<Vec<String>, String> {
        Err("not in this test".into())
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
        labels: BTreeMap::new(),
        mesh: true,
        services: BTreeMap::new(),
        probe_ports: vec![],
    }
}

fn mesh(pods: impl IntoIterator<Item = Workload>) -> MeshState {
    let mut s = MeshState {
        trust_domain: "cluster.local".into(),
        ..Default::default()
    };
    s.nodes.insert(
        "node-1".into(),
        Node {
            name: "node-1".into(),
            address: "172.18.0.2".parse().unwrap(),
        },
    );
    for w in pods {
        s.workloads.insert(w.uid.clone(), w);
    }
    s
}

struct Running {
    addr: SocketAddr,
    state: watch::Sender<Arc<MeshState>>,
    proxies: Arc<ConnectedProxies>,
    _stop: oneshot::Sender<()>,
}

async fn start(initial: MeshState) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (state, rx) = watch::channel(Arc::new(initial));
    let (stop, stopped) = oneshot::channel::<()>();
    let proxies = Arc::new(ConnectedProxies::new());
    tokio::spawn(serve::serve_listener(
        listener,
        None,
        rx,
        Arc::new(NoSigner),
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
        _stop: stop,
    }
}

/// ACKs `resp` on `s`, or NACKs it when it carries `bad`.
async fn reply(s: &RawStream, resp: &DeltaDiscoveryResponse, bad: &str) {
    let rejected = resp.resources.iter().any(|r| r.name == bad);
    s.send(DeltaDiscoveryRequest {
        type_url: ADDRESS_TYPE_URL.into(),
        response_nonce: resp.nonce.clone(),
        error_detail: rejected.then(|| google_rpc::Status {
            code: 3,
            message: format!("{bad} is bad"),
            details: vec![],
        }),
        ..Default::default()
    })
    .await;
}

fn subscribe(names: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(envoy_core::Node {
            id: "raw".into(),
            ..Default::default()
        }),
        type_url: ADDRESS_TYPE_URL.into(),
        resource_names_subscribe: names,
        ..Default::default()
    }
}

const BAD: &str = "Kubernetes//Pod/shop/bad";
const LATER: &str = "Kubernetes//Pod/shop/later";

#[tokio::test]
async fn a_rejected_resource_does_not_hold_back_the_others() {
    let server = start(mesh([pod("ok", "10.244.1.5"), pod("bad", "10.244.1.6")])).await;
    let mut s = RawStream::open(server.addr).await;
    s.send(subscribe(vec![])).await;
    let first = s.recv().await;
    reply(&s, &first, BAD).await;
    eventually_async("NACK recorded", LIMIT, || async {
        let proxies = server.proxies.list();
        let nacked = proxies.iter().any(|p| {
            p.types
                .get(ADDRESS_TYPE_URL)
                .is_some_and(|t| t.last_nack.as_ref().is_some_and(|n| n.nonce == first.nonce))
        });
        holds(nacked, &proxies)
    })
    .await;
    // A new resource after the NACK reaches the client, which keeps
    // rejecting the bad one whenever it comes.
    server.state.send_replace(Arc::new(mesh([
        pod("ok", "10.244.1.5"),
        pod("bad", "10.244.1.6"),
        pod("later", "10.244.1.7"),
    ])));
    loop {
        let resp = s.recv().await;
        reply(&s, &resp, BAD).await;
        let has_bad = resp.resources.iter().any(|r| r.name == BAD);
        if !has_bad && resp.resources.iter().any(|r| r.name == LATER) {
            break;
        }
    }
}

#[tokio::test]
async fn subscribed_names_per_stream_are_bounded() {
    let server = start(mesh([])).await;
    let mut s = RawStream::open(server.addr).await;
    let names = (0..100_001).map(|i| format!("Kubernetes//Pod/shop/p{i}"));
    s.send(subscribe(names.collect())).await;
    let Err(status) = s.next().await else {
        panic!("subscribing to 100001 names was answered");
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
}

#[tokio::test]
async fn a_push_larger_than_a_message_is_split() {
    let long = "x".repeat(200);
    let pods = (0..20_000u32).map(|i| {
        pod(
            &format!("p{i}-{long}"),
            &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
        )
    });
    let server = start(mesh(pods)).await;
    let mut s = RawStream::open(server.addr).await;
    s.send(subscribe(vec![])).await;
    let mut got = 0;
    while got < 20_000 {
        let resp = s.recv().await;
        got += resp.resources.len();
        reply(&s, &resp, "").await;
    }
    assert_eq!(got, 20_000);
}
