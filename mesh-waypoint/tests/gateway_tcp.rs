//! `--role gateway` with `tcp_proxy` chains, in process on 127.0.0.1: a
//! TCP listener relaying to a plain echo server; a TLS PASSTHROUGH
//! listener routing two SNIs to two TLS backends whose own certificates
//! the client verifies (the gateway relays the handshake untouched), and
//! closing connections without SNI or with a malformed ClientHello; a TLS
//! listener terminated in front of a TCP backend; the chains in the dump.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::{
        core::v3::{
            address, data_source::Specifier, socket_address::PortSpecifier, transport_socket,
            Address, DataSource, SocketAddress, TransportSocket,
        },
        listener::v3::{filter, Filter, FilterChain, FilterChainMatch, Listener},
    },
    extensions::{
        filters::network::tcp_proxy::v3::{
            tcp_proxy::{weighted_cluster::ClusterWeight, ClusterSpecifier, WeightedCluster},
            TcpProxy,
        },
        transport_sockets::tls::v3::{CommonTlsContext, DownstreamTlsContext, TlsCertificate},
    },
};
use mesh_waypoint::{gateway::ListenerManager, route::Deps, upstream::ClusterManager};
use mesh_xds::proto::wkt;
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const LIMIT: Duration = Duration::from_secs(10);

fn any<M: Message>(type_name: &str, m: &M) -> wkt::Any {
    wkt::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

fn tcp_proxy(spec: ClusterSpecifier) -> Filter {
    Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(
            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            &TcpProxy {
                stat_prefix: "test".into(),
                cluster_specifier: Some(spec),
                ..Default::default()
            },
        ))),
    }
}

fn to(cluster: &str) -> ClusterSpecifier {
    ClusterSpecifier::Cluster(cluster.into())
}

fn chain(names: &[&str], filter: Filter) -> FilterChain {
    FilterChain {
        filter_chain_match: (!names.is_empty()).then(|| FilterChainMatch {
            server_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![filter],
        ..Default::default()
    }
}

fn listener(name: &str, chains: Vec<FilterChain>) -> Listener {
    Listener {
        name: name.into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(0)),
                ..Default::default()
            })),
        }),
        filter_chains: chains,
        ..Default::default()
    }
}

fn gateway() -> (Arc<ListenerManager>, tokio::sync::watch::Sender<bool>) {
    let clusters = ClusterManager::new(Default::default());
    let (drain, drain_rx) = tokio::sync::watch::channel(false);
    let dir = std::env::temp_dir().join("mesh-waypoint-gateway-tcp-unused");
    (
        ListenerManager::new(Deps::new(clusters), dir, drain_rx),
        drain,
    )
}

/// A plain TCP server answering `<name>:` + each read, echoed.
async fn echo(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn ask<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    what: &str,
) -> String {
    s.write_all(what.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(LIMIT, s.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// True when the gateway closes `s` (EOF or reset) within the limit.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(LIMIT, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_tcp_listener_relays_bytes_to_its_cluster_and_weighted_clusters() {
    let (gw, _drain) = gateway();
    let a = echo("a").await;
    let b = echo("b").await;
    gw.tcp_upstreams().set_endpoints("a", vec![a]);
    gw.tcp_upstreams().set_endpoints("b", vec![b]);
    let single = listener("0.0.0.0_9000", vec![chain(&[], tcp_proxy(to("a")))]);
    let weighted = listener(
        "0.0.0.0_9001",
        vec![chain(
            &[],
            tcp_proxy(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: vec![
                    ClusterWeight {
                        name: "a".into(),
                        weight: 1,
                        ..Default::default()
                    },
                    ClusterWeight {
                        name: "b".into(),
                        weight: 1,
                        ..Default::default()
                    },
                ],
            })),
        )],
    );
    let errors = gw.apply(&[&single, &weighted], |_| None);
    assert!(errors.is_empty(), "{errors:?}");

    let mut s = TcpStream::connect(gw.local_addr("0.0.0.0_9000").unwrap())
        .await
        .unwrap();
    assert_eq!(ask(&mut s, "hello").await, "a:hello");
    assert_eq!(ask(&mut s, "again").await, "a:again");
    // A half-close reaches the upstream, which closes: the client sees EOF.
    s.shutdown().await.unwrap();
    assert!(closed(&mut s).await);

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(gw.local_addr("0.0.0.0_9001").unwrap())
            .await
            .unwrap();
        seen.insert(ask(&mut s, "x").await);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["a:x", "b:x"],
        "both weighted clusters take connections"
    );

    // A cluster without endpoints: the connection is closed.
    gw.tcp_upstreams().set_endpoints("a", vec![]);
    let mut s = TcpStream::connect(gw.local_addr("0.0.0.0_9000").unwrap())
        .await
        .unwrap();
    assert!(closed(&mut s).await);

    let (listeners, _) = gw.dump();
    let l = listeners
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "0.0.0.0_9001")
        .unwrap()
        .clone();
    assert_eq!(
        l["filter_chains"][0]["tcp_proxy"],
        serde_json::json!([{"cluster": "a", "weight": 1}, {"cluster": "b", "weight": 1}])
    );
}

// ---- TLS ----

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "passthrough test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate DER, key DER, certificate PEM, key PEM) for `san`.
    fn leaf(&self, san: &str) -> (Vec<u8>, Vec<u8>, String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![san.to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            cert.der().to_vec(),
            key.serialize_der(),
            cert.pem(),
            key.serialize_pem(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server for `san` (its own certificate, returned) answering
/// `<name>:` + each read.
async fn tls_backend(ca: &Ca, san: &str, name: &'static str) -> (SocketAddr, Vec<u8>) {
    let (cert, key, _, _) = ca.leaf(san);
    let der = cert.clone();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::try_from(key).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, der)
}

/// A TLS client trusting only `ca`, for `sni`; the certificate the peer
/// presented and the connection.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Ca,
    sni: &str,
) -> anyhow::Result<(Vec<u8>, tokio_rustls::client::TlsStream<TcpStream>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert.der().to_vec()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio::time::timeout(
        LIMIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(sni.to_string())?, tcp),
    )
    .await??;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    Ok((presented, tls))
}

#[tokio::test]
async fn passthrough_routes_by_sni_untouched_and_closes_what_no_chain_takes() {
    let ca = Ca::new();
    let (gw, _drain) = gateway();
    let (a, a_cert) = tls_backend(&ca, "a.example.com", "a").await;
    let (b, b_cert) = tls_backend(&ca, "b.example.com", "b").await;
    gw.tcp_upstreams().set_endpoints("a", vec![a]);
    gw.tcp_upstreams().set_endpoints("b", vec![b]);
    let pass = listener(
        "0.0.0.0_443",
        vec![
            chain(&["a.example.com"], tcp_proxy(to("a"))),
            chain(&["*.b.example.com", "b.example.com"], tcp_proxy(to("b"))),
        ],
    );
    assert!(gw.apply(&[&pass], |_| None).is_empty());
    let addr = gw.local_addr("0.0.0.0_443").unwrap();

    // Each SNI reaches its backend; the handshake is end to end, so the
    // client sees the backend's own certificate, verified against the CA.
    for (sni, name, cert) in [
        ("a.example.com", "a", &a_cert),
        ("b.example.com", "b", &b_cert),
    ] {
        let (presented, mut tls) = tls_connect(addr, &ca, sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e:#}"));
        assert_eq!(&presented, cert, "{sni}: the backend's own certificate");
        assert_eq!(ask(&mut tls, "ping").await, format!("{name}:ping"));
    }

    // No SNI: no chain takes it (no default chain); closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&client_hello_without_sni()).await.unwrap();
    assert!(closed(&mut s).await, "no SNI");
    // An unknown SNI: closed.
    assert!(tls_connect(addr, &ca, "other.org").await.is_err());
    // Not TLS, and a ClientHello with broken lengths: closed, no panic.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    assert!(closed(&mut s).await, "plain HTTP");
    let mut broken = client_hello_without_sni();
    broken[RECORD_HEADER + 4 + 34 + 1] = 0xff; // cipher suites length
    broken[RECORD_HEADER + 4 + 34 + 2] = 0xff;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&broken).await.unwrap();
    assert!(closed(&mut s).await, "malformed hello");
    // The listener still serves.
    let (_, mut tls) = tls_connect(addr, &ca, "a.example.com").await.unwrap();
    assert_eq!(ask(&mut tls, "still").await, "a:still");
}

#[tokio::test]
async fn a_terminated_tls_listener_relays_the_plaintext() {
    let ca = Ca::new();
    let (gw, _drain) = gateway();
    let dir =
        std::env::temp_dir().join(format!("mesh-waypoint-gateway-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, _, cert_pem, key_pem) = ca.leaf("db.example.com");
    let (cert_file, key_file) = (dir.join("db.crt"), dir.join("db.key"));
    std::fs::write(&cert_file, cert_pem).unwrap();
    std::fs::write(&key_file, key_pem).unwrap();
    let file = |p: &std::path::Path| {
        Some(DataSource {
            specifier: Some(Specifier::Filename(p.display().to_string())),
            ..Default::default()
        })
    };
    let mut terminated = chain(&["db.example.com"], tcp_proxy(to("db")));
    terminated.transport_socket = Some(TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            &DownstreamTlsContext {
                common_tls_context: Some(CommonTlsContext {
                    tls_certificates: vec![TlsCertificate {
                        certificate_chain: file(&cert_file),
                        private_key: file(&key_file),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))),
    });
    let db = echo("db").await;
    gw.tcp_upstreams().set_endpoints("db", vec![db]);
    let l = listener("0.0.0.0_9443", vec![terminated]);
    let errors = gw.apply(&[&l], |_| None);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(errors.is_empty(), "{errors:?}");
    let addr = gw.local_addr("0.0.0.0_9443").unwrap();
    let (_, mut tls) = tls_connect(addr, &ca, "db.example.com").await.unwrap();
    assert_eq!(ask(&mut tls, "select 1").await, "db:select 1");
}

const RECORD_HEADER: usize = 5;

/// A ClientHello with no extensions at all (so no SNI): TLS 1.2, one suite.
fn client_hello_without_sni() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0xc0, 0x2f]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // null compression
    let mut hs = vec![1, 0, 0, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1, 0, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}
