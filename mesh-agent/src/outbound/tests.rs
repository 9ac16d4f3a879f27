//! Every captured connection is finished in the stats exactly once, with
//! the route and response flag of the path it took.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use super::proxy::{self, ProxySettings};
use crate::state::{
    connections::ConnectionStats, fixtures, inputs::ProxyInputs, outcome::Carried, view::MeshView,
};

fn inputs(view: MeshView) -> Arc<ProxyInputs> {
    Arc::new(ProxyInputs {
        settings: ProxySettings {
            socket_mark: 0,
            buffer_size: 4096,
            connect_timeout: Duration::from_secs(5),
        },
        stats: Arc::new(ConnectionStats::default()),
        view: watch::channel(Arc::new(view)).1,
        live: Arc::default(),
        hbone: None,
        resolver: None,
    })
}

/// The agent's side of a fresh connection, and the pod's.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (agent, _) = listener.accept().await.unwrap();
    (agent, pod)
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Runs one connection from pod `a` (10.244.1.2) to `dst` to its end.
async fn run(inputs: &Arc<ProxyInputs>, dst: SocketAddr) {
    let (agent, _pod) = pair().await;
    let peer: SocketAddr = "10.244.1.2:40000".parse().unwrap();
    proxy::run(agent, peer, dst, Arc::clone(inputs)).await;
}

fn only_record(inputs: &ProxyInputs) -> crate::state::connections::ConnectionRecord {
    let totals = inputs.stats.totals();
    assert_eq!((totals.active, totals.completed), (0, 1), "{totals:?}");
    let recent = inputs.stats.recent();
    assert_eq!(recent.len(), 1);
    recent[0].clone()
}

#[tokio::test]
async fn passthrough_relays_and_finishes_once() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dst = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        s.write_all(b"hello").await.unwrap();
    });
    let inputs = inputs(MeshView::default());
    let (agent, mut pod) = pair().await;
    let peer = pod.local_addr().unwrap();
    let relay = tokio::spawn(proxy::run(agent, peer, dst, Arc::clone(&inputs)));
    let mut got = Vec::new();
    pod.read_to_end(&mut got).await.unwrap();
    drop(pod);
    relay.await.unwrap();
    assert_eq!(got, b"hello");
    let record = only_record(&inputs);
    assert_eq!(record.route, Carried::Passthrough);
    assert_eq!((record.bytes_received, record.response_flags), (5, "-"));
}

#[tokio::test]
async fn upstream_connect_failure_is_uf() {
    let inputs = inputs(MeshView::default());
    run(&inputs, closed_port().await).await;
    let record = only_record(&inputs);
    assert_eq!(record.response_flags, "UF");
    assert!(record.error.starts_with("connect: "), "{}", record.error);
    assert_eq!(inputs.stats.totals().upstream_connect_failed, 1);
}

#[tokio::test]
async fn a_service_without_endpoints_is_refused_with_nr() {
    let base = fixtures::view();
    let mut services: Vec<_> = base.services().cloned().collect();
    services[0].endpoints.clear();
    let workloads = base.workloads().cloned().collect();
    let inputs = inputs(MeshView::new("n1", workloads, services));
    run(&inputs, "10.96.0.10:80".parse().unwrap()).await;
    let record = only_record(&inputs);
    assert_eq!(record.route, Carried::Refused);
    assert_eq!(record.response_flags, "NR");
    assert_eq!(
        record.error,
        "service default/svc.default.svc.cluster.local has no endpoints"
    );
}

#[tokio::test]
async fn hbone_without_a_client_is_still_finished() {
    // a (n1) → c (n2): HBONE, but these inputs have no HBONE client.
    let inputs = inputs(fixtures::view());
    run(&inputs, "10.244.2.2:9080".parse().unwrap()).await;
    let record = only_record(&inputs);
    assert_eq!(record.route, Carried::Hbone);
    assert_eq!(record.response_flags, "UF");
}

/// Pod `a` and a ServiceEntry host `ext.test` on 240.240.0.9:80 whose
/// endpoint is the name `endpoint_host`, port `port`.
fn resolving_view(endpoint_host: &str, port: u16) -> MeshView {
    use crate::state::view::{EndpointAddress, ExternalEndpoint};
    MeshView::new(
        "n1",
        vec![fixtures::workload("a", "10.244.1.2", "n1", true)],
        vec![fixtures::entry(
            "ext.test",
            "240.240.0.9:80",
            vec![("se/ext".into(), port)],
        )],
    )
    .with_external(vec![ExternalEndpoint {
        uid: "se/ext".into(),
        namespace: "default".into(),
        address: EndpointAddress::Hostname(endpoint_host.into()),
    }])
}

fn with_resolver(view: MeshView, upstream: SocketAddr) -> Arc<ProxyInputs> {
    let inputs = inputs(view);
    let mut inputs = Arc::into_inner(inputs).unwrap();
    inputs.resolver = Some(crate::dns::resolve::Resolver::new(upstream).unwrap());
    Arc::new(inputs)
}

#[tokio::test]
async fn a_dns_endpoint_is_resolved_then_relayed_and_named_by_its_host() {
    let (dns, _) = crate::dns::tests::authoritative(
        &[("ext.test", [127, 0, 0, 1]), ("gone.test", [127, 0, 0, 1])],
        60,
    )
    .await;
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        s.write_all(b"external").await.unwrap();
    });
    let inputs = with_resolver(resolving_view("ext.test", port), dns);
    let (agent, mut pod) = pair().await;
    let peer: SocketAddr = "10.244.1.2:40000".parse().unwrap();
    let relay = tokio::spawn(proxy::run(
        agent,
        peer,
        "240.240.0.9:80".parse().unwrap(),
        Arc::clone(&inputs),
    ));
    let mut got = Vec::new();
    pod.read_to_end(&mut got).await.unwrap();
    drop(pod);
    relay.await.unwrap();
    assert_eq!(got, b"external");
    let record = only_record(&inputs);
    assert_eq!(record.route, Carried::Passthrough);
    assert_eq!(record.service, "ext.test");
    assert_eq!(
        record.upstream,
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    assert_eq!(record.response_flags, "-");
}

#[tokio::test]
async fn an_endpoint_name_that_does_not_resolve_is_df() {
    let (dns, _) = crate::dns::tests::authoritative(&[], 60).await;
    let inputs = with_resolver(resolving_view("nowhere.test", 80), dns);
    run(&inputs, "240.240.0.9:80".parse().unwrap()).await;
    let record = only_record(&inputs);
    assert_eq!(record.response_flags, "DF");
    assert_eq!(record.service, "ext.test");
    assert_eq!(inputs.stats.totals().upstream_connect_failed, 1);
    // No resolver at all: the same flag.
    let inputs = inputs_without_resolver();
    run(&inputs, "240.240.0.9:80".parse().unwrap()).await;
    assert_eq!(only_record(&inputs).response_flags, "DF");
}

fn inputs_without_resolver() -> Arc<ProxyInputs> {
    inputs(resolving_view("ext.test", 80))
}
