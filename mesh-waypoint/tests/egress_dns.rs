//! Hosts outside the mesh through the waypoint, on loopback: a STRICT_DNS
//! cluster whose name a test DNS responder (hickory-proto answers on
//! 127.0.0.1) resolves to an HTTPS server signed by a test CA (rcgen); the
//! waypoint originates TLS (the server sees the SNI), a cluster trusting
//! another CA fails with 503 + UF, the record's TTL is honoured (a changed
//! answer moves traffic to the new address), a TLS context whose CA file
//! does not exist is NACKed naming the field, and an ORIGINAL_DST cluster
//! connects where the tunnel was addressed.
mod support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy},
            Cluster,
        },
        core::v3::{
            data_source::Specifier, transport_socket::ConfigType, DataSource, TransportSocket,
        },
        route::v3::{
            route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
            RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        },
    },
    extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
        CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher},
};
use hickory_proto::{
    op::{Message, OpCode, ResponseCode},
    rr::{rdata::A, RData, Record, RecordType},
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_testkit::eventually_async;
use mesh_waypoint::{
    app::wiring,
    config::{route_config, ActiveConfig, HttpFilter},
    route::{
        exchange::{Downstream, Exchange},
        Deps, Observer, Proxy,
    },
    server,
    telemetry::RequestRecord,
    upstream::{SendContext, Upstream},
};
use mesh_xds::{proto::wkt, XdsResource, CLUSTER_TYPE_URL};
use prost::Message as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UdpSocket};

const HOST: &str = "api.egress.test";
const LIMIT: Duration = Duration::from_secs(10);

// ---- a DNS responder ----

/// Answers `A HOST` with the current address (TTL 1 s); NXDOMAIN else.
struct Dns {
    addr: SocketAddr,
    answer: Arc<Mutex<Ipv4Addr>>,
    queries: Arc<AtomicUsize>,
}

async fn dns(first: Ipv4Addr) -> Dns {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let answer = Arc::new(Mutex::new(first));
    let queries = Arc::new(AtomicUsize::new(0));
    let (a, q) = (answer.clone(), queries.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            let Some(query) = req.queries.first().cloned() else {
                continue;
            };
            let ours = query.name().to_ascii().trim_end_matches('.') == HOST;
            if ours && query.query_type() == RecordType::A {
                q.fetch_add(1, Ordering::SeqCst);
                let ip = *a.lock().unwrap();
                resp.add_answer(Record::from_rdata(query.name().clone(), 1, RData::A(A(ip))));
            } else if !ours {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            resp.add_query(query);
            let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    Dns {
        addr,
        answer,
        queries,
    }
}

// ---- certificates and HTTPS servers ----

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }
}

/// An HTTPS server at `ip` (the port `port`, 0: any) whose certificate
/// names HOST; answers its own name; records the SNI of each handshake.
async fn https(ca: &Ca, ip: Ipv4Addr, port: u16, sni: Arc<Mutex<Vec<String>>>) -> Option<u16> {
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![HOST.to_string()])
        .unwrap()
        .signed_by(&key, &ca.cert, &ca.key)
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind(SocketAddr::from((ip, port))).await.ok()?;
    let port = listener.local_addr().unwrap().port();
    let name = format!("server-{ip}");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, sni, name) = (acceptor.clone(), sni.clone(), name.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let seen = tls.get_ref().1.server_name().unwrap_or("").to_string();
                sni.lock().unwrap().push(seen);
                let svc = service_fn(move |_req| {
                    let name = name.clone();
                    async move {
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(name))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Some(port)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-waypoint-egress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- Envoy resources ----

fn tls_socket(ca_file: &str, san: &str) -> TransportSocket {
    let ctx = UpstreamTlsContext {
        sni: HOST.into(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(DataSource {
                        specifier: Some(Specifier::Filename(ca_file.into())),
                        ..Default::default()
                    }),
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: SanType::Dns as i32,
                        matcher: Some(StringMatcher {
                            match_pattern: Some(MatchPattern::Exact(san.into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(ConfigType::TypedConfig(wkt::Any {
            type_url:
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
                    .into(),
            value: ctx.encode_to_vec(),
        })),
    }
}

/// A STRICT_DNS cluster of HOST:`port`, respecting the TTL, with TLS.
#[allow(deprecated)]
fn dns_cluster(name: &str, port: u16, tls: TransportSocket) -> Cluster {
    let mut cla = support::cla(name, SocketAddr::from(([127, 0, 0, 1], port)));
    if let Some(
        envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(e),
    ) = &mut cla.endpoints[0].lb_endpoints[0].host_identifier
    {
        if let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(sa)) =
            e.address.as_mut().and_then(|a| a.address.as_mut())
        {
            sa.address = HOST.into();
        }
    }
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)),
        respect_dns_ttl: true,
        dns_lookup_family: DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(cla),
        connect_timeout: Some(wkt::Duration {
            seconds: 2,
            nanos: 0,
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        transport_socket: Some(tls),
        ..Default::default()
    }
}

fn route(prefix: &str, cluster: &str) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Keeps every finished request's flags.
#[derive(Default)]
struct Flags(Mutex<Vec<(u16, String)>>);

impl Observer for Flags {
    fn record(&self, r: RequestRecord) {
        self.0.lock().unwrap().push((r.status, r.flags));
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", format!("{HOST}:80"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_dns_cluster_originates_tls_honours_ttl_and_rejects_a_wrong_ca() {
    let dir = temp_dir();
    let (ca, other) = (Ca::new("egress test CA"), Ca::new("another CA"));
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let other_file = dir.join("other.pem");
    std::fs::write(&other_file, other.cert.pem()).unwrap();

    // Two servers on one port at two loopback addresses.
    let sni = Arc::new(Mutex::new(Vec::new()));
    let (ip_a, ip_b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let mut port = 0;
    for _ in 0..20 {
        let p = https(&ca, ip_a, 0, sni.clone()).await.unwrap();
        if https(&ca, ip_b, p, sni.clone()).await.is_some() {
            port = p;
            break;
        }
    }
    assert_ne!(port, 0, "no port free on both {ip_a} and {ip_b}");
    let resolver = dns(ip_a).await;

    let clusters = wiring::ClusterManager::with_external(
        wiring::UpstreamOptions::default(),
        wiring::ExternalOptions {
            dns_upstream: Some(resolver.addr),
            credential_dir: dir.clone(),
        },
    );
    let good = dns_cluster(
        "outbound|80||api.egress.test",
        port,
        tls_socket(ca_file.to_str().unwrap(), HOST),
    );
    let wrong = dns_cluster(
        "wrong-ca",
        port,
        tls_socket(other_file.to_str().unwrap(), HOST),
    );
    for c in [&good, &wrong] {
        mesh_waypoint::upstream::validate_with(
            CLUSTER_TYPE_URL,
            &XdsResource::Cluster(Box::new(c.clone())),
            &Default::default(),
        )
        .unwrap();
    }
    clusters.apply_resources([&good, &wrong], [], Default::default());

    let rc = RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![VirtualHost {
            name: "api.egress.test:80".into(),
            domains: vec![format!("{HOST}:80")],
            routes: vec![
                route("/wrong", "wrong-ca"),
                route("/", "outbound|80||api.egress.test"),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let cfg = ActiveConfig {
        listener: None,
        table: Arc::new(route_config::translate(&rc).unwrap()),
        filters: vec![HttpFilter::Router],
        generation: 1,
    };
    let flags = Arc::new(Flags::default());
    let mut deps = Deps::new(clusters.clone());
    deps.observer = flags.clone();
    let proxy = Proxy::new(Arc::new(cfg), deps);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(async move {
        server::http::serve(listener, proxy, shutdown).await;
    });

    // The first request waits for the first resolution.
    let (status, body) = get(addr, "/").await;
    assert_eq!((status, body.as_str()), (200, "server-127.0.0.2"));
    assert_eq!(sni.lock().unwrap().first().map(String::as_str), Some(HOST));

    // A CA that did not sign the server's certificate: 503 + UF.
    let (status, _) = get(addr, "/wrong").await;
    assert_eq!(status, 503);
    let last = flags.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.0, 503);
    assert!(last.1.contains("UF"), "flags {:?}", last.1);

    // The answer changes; once its 1 s TTL lapses the new address serves.
    let before = resolver.queries.load(Ordering::SeqCst);
    *resolver.answer.lock().unwrap() = ip_b;
    eventually_async("the new DNS answer to take traffic", LIMIT, || async {
        get(addr, "/").await.1 == "server-127.0.0.3"
    })
    .await;
    assert!(resolver.queries.load(Ordering::SeqCst) > before);
    let dump = clusters.dump();
    let eps: Vec<&str> = dump["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cluster"] == "outbound|80||api.egress.test")
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(eps, vec![format!("{ip_b}:{port}")]);

    let _ = stop.send(true);
    serving.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tls_context_whose_ca_file_is_missing_is_nacked_naming_the_field() {
    let c = dns_cluster("c", 443, tls_socket("/nonexistent/ca.pem", HOST));
    let (field, reason) = mesh_waypoint::upstream::validate_with(
        CLUSTER_TYPE_URL,
        &XdsResource::Cluster(Box::new(c.clone())),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(
        field,
        "transport_socket.typed_config.common_tls_context.validation_context.trusted_ca"
    );
    assert!(reason.contains("/nonexistent/ca.pem"), "{reason}");
    // Without reading files the structure is fine.
    assert!(mesh_waypoint::upstream::validate(
        CLUSTER_TYPE_URL,
        &XdsResource::Cluster(Box::new(c))
    )
    .is_ok());
    let mut two = dns_cluster("c", 443, tls_socket("/x", HOST));
    two.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::LogicalDns as i32));
    let eps = &mut two.load_assignment.as_mut().unwrap().endpoints[0].lb_endpoints;
    eps.push(eps[0].clone());
    assert_eq!(
        mesh_waypoint::upstream::validate(CLUSTER_TYPE_URL, &XdsResource::Cluster(Box::new(two)))
            .unwrap_err()
            .0,
        "load_assignment.endpoints"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_connects_where_the_tunnel_was_addressed() {
    // A plain HTTP server standing for the external address.
    let listener = TcpListener::bind("127.0.0.4:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(host))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions::default());
    let c = Cluster {
        name: "passthrough".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        ..Default::default()
    };
    clusters.apply_resources([&c], [], Default::default());
    let request = |authority: Option<SocketAddr>| {
        let mut req = hyper::Request::builder()
            .uri("/")
            .header("host", "db.example:5432")
            .body(mesh_waypoint::body::empty())
            .unwrap();
        req.extensions_mut().insert(Exchange::new(Downstream {
            tunnel_authority: authority,
            ..Default::default()
        }));
        req
    };
    let r = clusters
        .send("passthrough", request(Some(target)), SendContext::default())
        .await
        .unwrap();
    assert_eq!(r.endpoint, target);
    let body = r.response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "db.example:5432");
    // No original destination known (the plain listener): no host.
    let e = clusters
        .send("passthrough", request(None), SendContext::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.flag(), "UH");
}
