//! The DNS proxy: names answered from the view for each form and
//! namespace, REFUSED for unknown sources, forwarded queries relayed byte
//! for byte (UDP and TCP), failures; and the endpoint resolver against a
//! test upstream on loopback.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{rdata::A, Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    sync::watch,
    task::JoinHandle,
};

use super::{
    answer::{decide, Decision, HostIndex},
    resolve::{ResolveError, Resolver},
    server::{DnsServer, DnsState},
    upstream::Upstream,
};
use crate::{
    metrics::dns::{DnsMetrics, Outcome},
    state::{
        fixtures::{entries_view, workload},
        view::MeshView,
    },
};

/// Pod `a`, namespace `default`.
const A_POD: &str = "10.244.1.2:5353";
/// Pod `o`, namespace `other`.
const OTHER_POD: &str = "10.244.1.9:5353";

fn query(name: &str, kind: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    m.to_vec().unwrap()
}

/// The answer's addresses, or the decision when it is no answer.
fn answered(
    view: &MeshView,
    src: &str,
    name: &str,
    kind: RecordType,
) -> Result<Vec<IpAddr>, Decision> {
    let index = HostIndex::new(view);
    match decide(view, &index, src.parse().unwrap(), &query(name, kind)) {
        Decision::Answer(bytes) => {
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.metadata.id, 0x4242);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.recursion_desired, "RD copied");
            assert_eq!(m.queries.len(), 1, "question echoed");
            Ok(m.answers
                .iter()
                .map(|r| {
                    assert_eq!(r.ttl, super::answer::ANSWER_TTL);
                    match &r.data {
                        RData::A(a) => IpAddr::V4(a.0),
                        RData::AAAA(a) => IpAddr::V6(a.0),
                        other => panic!("{other:?}"),
                    }
                })
                .collect())
        }
        other => Err(other),
    }
}

fn ips(list: &[&str]) -> Result<Vec<IpAddr>, Decision> {
    Ok(list.iter().map(|s| s.parse().unwrap()).collect())
}

#[test]
fn kubernetes_services_answer_every_search_form_of_the_pods_namespace() {
    let v = entries_view();
    for name in [
        "svc.default.svc.cluster.local.",
        "SVC.Default.svc.cluster.local",
        "svc.default.svc.",
        "svc.default.",
        "svc.",
    ] {
        assert_eq!(
            answered(&v, A_POD, name, RecordType::A),
            ips(&["10.96.0.10"]),
            "{name}"
        );
    }
    // From namespace `other`, the bare name is its own namespace's: not ours.
    assert_eq!(
        answered(&v, OTHER_POD, "svc.", RecordType::A),
        Err(Decision::Forward)
    );
    assert_eq!(
        answered(&v, OTHER_POD, "svc.default.", RecordType::A),
        ips(&["10.96.0.10"])
    );
    // A known name without IPv6 VIPs: an empty NOERROR answer.
    assert_eq!(
        answered(&v, A_POD, "svc.default.", RecordType::AAAA),
        ips(&[])
    );
    // Other record types and unknown names go upstream.
    assert_eq!(
        answered(&v, A_POD, "svc.default.", RecordType::MX),
        Err(Decision::Forward)
    );
    assert_eq!(
        answered(&v, A_POD, "nope.default.", RecordType::A),
        Err(Decision::Forward)
    );
    assert_eq!(
        answered(&v, A_POD, "example.org.", RecordType::A),
        Err(Decision::Forward)
    );
}

#[test]
fn service_entry_hosts_answer_only_where_exported() {
    let v = entries_view();
    assert_eq!(
        answered(&v, A_POD, "www.googleapis.com.", RecordType::A),
        ips(&["240.240.0.1"])
    );
    assert_eq!(
        answered(&v, OTHER_POD, "www.googleapis.com.", RecordType::A),
        Err(Decision::Forward),
        "exportTo [default]"
    );
    assert_eq!(
        answered(&v, OTHER_POD, "api.static.test.", RecordType::A),
        ips(&["240.240.0.2"])
    );
    assert_eq!(
        answered(&v, A_POD, "hidden.test.", RecordType::A),
        Err(Decision::Forward)
    );
    // A ServiceEntry host has no short forms.
    assert_eq!(
        answered(&v, A_POD, "www.", RecordType::A),
        Err(Decision::Forward)
    );
}

#[test]
fn wildcard_hosts_answer_names_under_them() {
    let v = entries_view();
    assert_eq!(
        answered(&v, A_POD, "x.wild.test.", RecordType::A),
        ips(&["240.240.0.4"])
    );
    assert_eq!(
        answered(&v, A_POD, "a.b.wild.test.", RecordType::A),
        ips(&["240.240.0.4"])
    );
    assert_eq!(
        answered(&v, A_POD, "wild.test.", RecordType::A),
        Err(Decision::Forward)
    );
    assert_eq!(
        answered(&v, A_POD, "xwild.test.", RecordType::A),
        Err(Decision::Forward)
    );
}

#[test]
fn unknown_sources_are_refused_and_garbage_dropped() {
    let v = entries_view();
    let index = HostIndex::new(&v);
    let q = query("www.googleapis.com.", RecordType::A);
    let Decision::Refuse(bytes) = decide(&v, &index, "192.0.2.1:5353".parse().unwrap(), &q) else {
        panic!("not refused")
    };
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(m.metadata.id, 0x4242);
    assert!(m.answers.is_empty());
    let src = A_POD.parse().unwrap();
    assert_eq!(decide(&v, &index, src, b"\x00\x01garbage"), Decision::Drop);
    // A response is not a query.
    let mut response = Message::from_vec(&q).unwrap();
    response.metadata.message_type = MessageType::Response;
    assert_eq!(
        decide(&v, &index, src, &response.to_vec().unwrap()),
        Decision::Drop
    );
}

/// An upstream on loopback answering every UDP query with the query's id
/// followed by `tail`, and every TCP query likewise; returns its address.
async fn canned_upstream(tail: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let task = tokio::spawn(async move {
        let udp_loop = async {
            let mut buf = [0u8; 4096];
            loop {
                let (n, from) = udp.recv_from(&mut buf).await.unwrap();
                let mut reply = buf[..n.min(2)].to_vec();
                reply.extend_from_slice(tail);
                udp.send_to(&reply, from).await.unwrap();
            }
        };
        let tcp_loop = async {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                let len = s.read_u16().await.unwrap();
                let mut q = vec![0u8; usize::from(len)];
                s.read_exact(&mut q).await.unwrap();
                let mut reply = q[..2].to_vec();
                reply.extend_from_slice(tail);
                s.write_u16(reply.len() as u16).await.unwrap();
                s.write_all(&reply).await.unwrap();
            }
        };
        tokio::join!(udp_loop, tcp_loop);
    });
    (addr, task)
}

/// A view whose pod `lo` is at 127.0.0.2 (namespace `default`), so a
/// test client bound there is a known pod.
fn loopback_view() -> MeshView {
    let v = entries_view();
    let mut workloads: Vec<_> = v.workloads().cloned().collect();
    workloads.push(workload("lo", "127.0.0.2", "n1", true));
    MeshView::new("n1", workloads, v.services().cloned().collect())
}

async fn server(upstream: Option<SocketAddr>) -> (SocketAddr, DnsMetrics) {
    let metrics = DnsMetrics::default();
    let state = DnsState::new(
        watch::channel(Arc::new(loopback_view())).1,
        upstream.map(|addr| Upstream {
            addr,
            timeout: Duration::from_millis(500),
            mark: 0,
        }),
        metrics.clone(),
    );
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve());
    (addr, metrics)
}

async fn udp_exchange(from: &str, to: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let client = UdpSocket::bind(from).await.unwrap();
    client.send_to(q, to).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(3), client.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

/// Bytes no resolver would produce: a relay that re-encodes would change them.
const ODD_TAIL: &[u8] =
    b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01trailing-bytes";

#[tokio::test]
async fn forwarded_queries_come_back_byte_for_byte_over_udp_and_tcp() {
    let (upstream, _task) = canned_upstream(ODD_TAIL).await;
    let (dns, metrics) = server(Some(upstream)).await;
    let q = query("example.org.", RecordType::A);
    let mut expected = q[..2].to_vec();
    expected.extend_from_slice(ODD_TAIL);
    let got = udp_exchange("127.0.0.2:0", dns, &q)
        .await
        .expect("no answer");
    assert_eq!(got, expected);
    // TCP, same port.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(dns).await.unwrap();
    s.write_u16(q.len() as u16).await.unwrap();
    s.write_all(&q).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut got = vec![0u8; usize::from(len)];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
    // And a mesh name on the same connection is answered locally.
    let q = query("www.googleapis.com.", RecordType::A);
    s.write_u16(q.len() as u16).await.unwrap();
    s.write_all(&q).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut got = vec![0u8; usize::from(len)];
    s.read_exact(&mut got).await.unwrap();
    let m = Message::from_vec(&got).unwrap();
    assert_eq!(m.answers.len(), 1);
    assert_eq!(metrics.get(Outcome::Forwarded), 2);
    assert_eq!(metrics.get(Outcome::Answered), 1);
}

#[tokio::test]
async fn unknown_sources_get_refused_over_the_wire() {
    let (upstream, _task) = canned_upstream(ODD_TAIL).await;
    let (dns, metrics) = server(Some(upstream)).await;
    // 127.0.0.3 is no pod of the view.
    let q = query("example.org.", RecordType::A);
    let got = udp_exchange("127.0.0.3:0", dns, &q)
        .await
        .expect("no answer");
    let m = Message::from_vec(&got).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(metrics.get(Outcome::Refused), 1);
    assert_eq!(metrics.get(Outcome::Forwarded), 0, "never forwarded");
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_in_time() {
    // Bound, never answering.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (dns, metrics) = server(Some(silent.local_addr().unwrap())).await;
    let q = query("example.org.", RecordType::A);
    let got = udp_exchange("127.0.0.2:0", dns, &q)
        .await
        .expect("no answer");
    let m = Message::from_vec(&got).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(metrics.get(Outcome::Failed), 1);
    // Without any upstream, likewise.
    let (dns, _) = server(None).await;
    let got = udp_exchange("127.0.0.2:0", dns, &q)
        .await
        .expect("no answer");
    let m = Message::from_vec(&got).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

/// An authoritative test server on loopback (UDP): `names` → address, TTL
/// `ttl`; anything else NXDOMAIN. Counts the queries it got.
pub(crate) async fn authoritative(
    names: &'static [(&'static str, [u8; 4])],
    ttl: u32,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let q = Message::from_vec(&buf[..n]).unwrap();
            let question = q.queries[0].clone();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.add_query(question.clone());
            let name = question.name.to_ascii().trim_end_matches('.').to_string();
            match names.iter().find(|(n, _)| *n == name) {
                Some((_, ip)) if question.query_type == RecordType::A => {
                    r.add_answer(Record::from_rdata(
                        question.name.clone(),
                        ttl,
                        RData::A(A(std::net::Ipv4Addr::from(*ip))),
                    ));
                }
                Some(_) => {}
                None => r.metadata.response_code = ResponseCode::NXDomain,
            }
            udp.send_to(&r.to_vec().unwrap(), from).await.unwrap();
        }
    });
    (addr, count)
}

#[tokio::test]
async fn the_resolver_caches_for_the_ttl_and_reports_failures_typed() {
    let (upstream, queries) = authoritative(&[("www.googleapis.com", [192, 0, 2, 80])], 300).await;
    let resolver = Resolver::new(upstream).unwrap();
    let ip = resolver.resolve("www.googleapis.com", true).await.unwrap();
    assert_eq!(ip.to_string(), "192.0.2.80");
    let asked = queries.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        resolver.resolve("www.googleapis.com", true).await.unwrap(),
        ip
    );
    assert_eq!(
        queries.load(std::sync::atomic::Ordering::SeqCst),
        asked,
        "the second lookup is served from the cache"
    );
    let error = resolver.resolve("nowhere.test", true).await.unwrap_err();
    assert!(matches!(error, ResolveError::Lookup { .. }), "{error}");
    assert!(matches!(
        resolver.resolve("bad..name", true).await.unwrap_err(),
        ResolveError::BadName { .. }
    ));
}

#[tokio::test]
async fn a_zero_ttl_answer_is_asked_again() {
    let (upstream, queries) = authoritative(&[("short.test", [192, 0, 2, 81])], 0).await;
    let resolver = Resolver::new(upstream).unwrap();
    resolver.resolve("short.test", true).await.unwrap();
    let asked = queries.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    resolver.resolve("short.test", true).await.unwrap();
    assert!(
        queries.load(std::sync::atomic::Ordering::SeqCst) > asked,
        "an expired answer is not served from the cache"
    );
}
