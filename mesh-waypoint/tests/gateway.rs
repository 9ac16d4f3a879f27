//! `--role gateway` in process: hand-built Listener / RouteConfiguration /
//! Cluster / ClusterLoadAssignment resources into the listener manager,
//! real upstream servers and real clients on 127.0.0.1 — plain HTTP,
//! HTTPS with SNI picking certificate and routes, mutual TLS, the
//! `require_tls` redirect, and a removed listener that stops accepting.
mod support;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use envoy_types::pb::envoy::{
    config::{
        cluster::v3::Cluster,
        core::v3::{
            address, data_source::Specifier, socket_address::PortSpecifier, transport_socket,
            Address, DataSource, SocketAddress, TransportSocket,
        },
        listener::v3::{filter, Filter, FilterChain, FilterChainMatch, Listener},
        route::v3::{
            route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
            RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        },
    },
    extensions::{
        filters::network::http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
            HttpFilter, Rds,
        },
        transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, CommonTlsContext, DownstreamTlsContext,
            SdsSecretConfig, TlsCertificate,
        },
    },
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_testkit::eventually_async;
use mesh_waypoint::{app::wiring, gateway::ListenerManager, route::Deps};
use mesh_xds::proto::wkt;
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};

const LIMIT: Duration = Duration::from_secs(10);

// ---- certificates ----

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
            .push(DnType::CommonName, "gateway test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `san` with `usage`.
    fn leaf(&self, san: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![san.to_string()]).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

struct Leaf {
    pem: String,
    der: Vec<u8>,
    key_pem: String,
    key_der: Vec<u8>,
}

/// A fresh directory under the system temp dir.
fn temp_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "mesh-waypoint-gateway-{what}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, pem: &str) -> String {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, pem).unwrap();
    path.display().to_string()
}

// ---- Envoy resources ----

fn any<M: Message>(type_name: &str, m: &M) -> wkt::Any {
    wkt::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

fn hcm(route_config: &str) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: route_config.into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: route_config.into(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(wkt::Any {
                type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    .into(),
                value: vec![],
            })),
            ..Default::default()
        }],
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            &hcm,
        ))),
    }
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::Filename(path.into())),
        ..Default::default()
    })
}

fn tls_socket(ctx: DownstreamTlsContext) -> Option<TransportSocket> {
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            &ctx,
        ))),
    })
}

fn alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

/// A TLS chain for `names` with certificate files.
fn tls_chain_files(names: &[&str], cert: &str, key: &str, route_config: &str) -> FilterChain {
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            server_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![hcm(route_config)],
        transport_socket: tls_socket(DownstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                tls_certificates: vec![TlsCertificate {
                    certificate_chain: file(cert),
                    private_key: file(key),
                    ..Default::default()
                }],
                alpn_protocols: alpn(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A TLS chain for `names` with Istio's `credentialName` (SDS names);
/// `mutual` adds `require_client_certificate` with `<credential>-cacert`.
fn tls_chain_sds(
    names: &[&str],
    credential: &str,
    mutual: bool,
    route_config: &str,
) -> FilterChain {
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            server_names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![hcm(route_config)],
        transport_socket: tls_socket(DownstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                    name: format!("kubernetes://{credential}"),
                    ..Default::default()
                }],
                validation_context_type: mutual.then(|| {
                    ValidationContextType::ValidationContextSdsSecretConfig(SdsSecretConfig {
                        name: format!("kubernetes://{credential}-cacert"),
                        ..Default::default()
                    })
                }),
                alpn_protocols: alpn(),
                ..Default::default()
            }),
            require_client_certificate: mutual.then_some(wkt::BoolValue { value: true }),
            ..Default::default()
        }),
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

fn plain_chain(route_config: &str) -> FilterChain {
    FilterChain {
        filters: vec![hcm(route_config)],
        ..Default::default()
    }
}

fn routes(name: &str, hosts: &[(&str, &str, bool)]) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: hosts
            .iter()
            .map(|(host, cluster, require_tls)| VirtualHost {
                name: format!("{host}:443"),
                domains: vec![host.to_string(), format!("{host}:*")],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(Action::Route(RouteAction {
                        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                // TlsRequirementType::All
                require_tls: if *require_tls { 2 } else { 0 },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

// ---- upstream servers and clients ----

/// An HTTP server answering `<name> <path>`.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = format!("{name} {}", req.uri().path());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// One HTTP/1.1 GET over `io`: status, `location`, body.
async fn get<I>(io: I, host: &str, path: &str) -> anyhow::Result<(u16, String, String)>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Connects with TLS and SNI `sni`, trusting `ca`, with an optional
/// client certificate; returns the certificate the gateway presented and
/// the answer to `GET path`.
async fn get_tls(
    addr: SocketAddr,
    sni: &str,
    ca: &[u8],
    client: Option<&Leaf>,
    path: &str,
) -> anyhow::Result<(Vec<u8>, (u16, String, String))> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => {
            let certs = vec![CertificateDer::from(leaf.der.clone())];
            let key = PrivateKeyDer::try_from(leaf.key_der.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string())?, tcp)
        .await?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let answer = get(tls, sni, path).await?;
    Ok((presented, answer))
}

/// An h2 GET over TLS with ALPN `h2` (the gateway must pick h2) or over
/// plain TCP (h2c): status and body.
async fn get_h2(
    addr: SocketAddr,
    tls_with_ca: Option<&[u8]>,
    authority: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let req = hyper::Request::builder()
        .uri(format!(
            "{}://{authority}{path}",
            if tls_with_ca.is_some() {
                "https"
            } else {
                "http"
            }
        ))
        .body(Empty::<Bytes>::new())?;
    let resp = match tls_with_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(ca.to_vec()))?;
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from(authority.to_string())?, tcp)
                .await?;
            anyhow::ensure!(
                tls.get_ref().1.alpn_protocol() == Some(b"h2"),
                "ALPN h2 not chosen"
            );
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        }
        None => {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        }
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_from_lds_serve_plain_https_by_sni_and_mutual_tls() {
    let ca = Ca::new();
    let ca_der = ca.cert.der().to_vec();
    let files = temp_dir("files");
    let credentials = temp_dir("credentials");
    // a.example.com: certificate files; b.example.com: credentialName
    // `b-cred`; mtls.example.com: credentialName `m-cred` with its CA.
    let a = ca.leaf("a.example.com", ExtendedKeyUsagePurpose::ServerAuth);
    let a_cert_file = write(&files.join("a.crt"), &a.pem);
    let a_key_file = write(&files.join("a.key"), &a.key_pem);
    let b = ca.leaf("b.example.com", ExtendedKeyUsagePurpose::ServerAuth);
    write(&credentials.join("b-cred/tls.crt"), &b.pem);
    write(&credentials.join("b-cred/tls.key"), &b.key_pem);
    let m = ca.leaf("mtls.example.com", ExtendedKeyUsagePurpose::ServerAuth);
    write(&credentials.join("m-cred/tls.crt"), &m.pem);
    write(&credentials.join("m-cred/tls.key"), &m.key_pem);
    write(&credentials.join("m-cred/ca.crt"), &ca.cert.pem());
    let client = ca.leaf("client.example.com", ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = Ca::new().leaf("client.example.com", ExtendedKeyUsagePurpose::ClientAuth);

    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions {
        hbone: None,
        identity: None,
    });
    let (a_up, b_up, plain_up) = (
        upstream("a").await,
        upstream("b").await,
        upstream("plain").await,
    );
    let cluster = |n: &str| Cluster {
        name: n.into(),
        ..Default::default()
    };
    clusters.apply_resources(
        [&cluster("a"), &cluster("b"), &cluster("plain")],
        [
            &support::cla("a", a_up),
            &support::cla("b", b_up),
            &support::cla("plain", plain_up),
        ],
        Default::default(),
    );
    let (drain, drain_rx) = tokio::sync::watch::channel(false);
    let gateway = ListenerManager::new(Deps::new(clusters.clone()), credentials.clone(), drain_rx);

    let http = listener("0.0.0.0_80", vec![plain_chain("http.80")]);
    let https = listener(
        "0.0.0.0_443",
        vec![
            tls_chain_files(
                &["a.example.com"],
                &a_cert_file,
                &a_key_file,
                "https.443.a.gw.ns",
            ),
            tls_chain_sds(&["b.example.com"], "b-cred", false, "https.443.b.gw.ns"),
            tls_chain_sds(&["mtls.example.com"], "m-cred", true, "https.443.m.gw.ns"),
        ],
    );
    let route_configs = [
        routes(
            "http.80",
            &[
                ("plain.example.com", "plain", false),
                ("secure.example.com", "plain", true),
            ],
        ),
        routes("https.443.a.gw.ns", &[("a.example.com", "a", false)]),
        routes("https.443.b.gw.ns", &[("b.example.com", "b", false)]),
        routes("https.443.m.gw.ns", &[("mtls.example.com", "a", false)]),
    ];
    let find = |name: &str| route_configs.iter().find(|rc| rc.name == name);
    let errors = gateway.apply(&[&http, &https], find);
    assert!(errors.is_empty(), "{errors:?}");
    let http_addr = gateway.local_addr("0.0.0.0_80").unwrap();
    let https_addr = gateway.local_addr("0.0.0.0_443").unwrap();

    // Plain HTTP routed by Host; a require_tls host redirected to https.
    let tcp = tokio::net::TcpStream::connect(http_addr).await.unwrap();
    assert_eq!(
        bounded("plain", get(tcp, "plain.example.com", "/p"))
            .await
            .unwrap(),
        (200, String::new(), "plain /p".into())
    );
    let tcp = tokio::net::TcpStream::connect(http_addr).await.unwrap();
    let (status, location, _) = bounded("redirect", get(tcp, "secure.example.com", "/x?y=1"))
        .await
        .unwrap();
    assert_eq!(
        (status, location.as_str()),
        (301, "https://secure.example.com/x?y=1")
    );

    // HTTPS: each SNI gets its own certificate and its own routes.
    let (presented, answer) = bounded(
        "a",
        get_tls(https_addr, "a.example.com", &ca_der, None, "/a"),
    )
    .await
    .unwrap();
    assert_eq!(presented, a.der, "a.example.com's certificate");
    assert_eq!(answer, (200, String::new(), "a /a".into()));
    let (presented, answer) = bounded(
        "b",
        get_tls(https_addr, "b.example.com", &ca_der, None, "/b"),
    )
    .await
    .unwrap();
    assert_eq!(presented, b.der, "b.example.com's certificate");
    assert_eq!(answer, (200, String::new(), "b /b".into()));
    assert_eq!(
        bounded(
            "b over h2",
            get_h2(https_addr, Some(&ca_der), "b.example.com", "/h2")
        )
        .await
        .unwrap(),
        (200, "b /h2".into())
    );
    assert_eq!(
        bounded("h2c", get_h2(http_addr, None, "plain.example.com", "/h2c"))
            .await
            .unwrap(),
        (200, "plain /h2c".into())
    );
    // No chain for the name and no default chain: refused.
    assert!(bounded(
        "unknown sni",
        get_tls(https_addr, "c.example.com", &ca_der, None, "/")
    )
    .await
    .is_err());

    // MUTUAL: no client certificate or one from another CA is refused; a
    // certificate of the configured CA is admitted.
    assert!(bounded(
        "no client cert",
        get_tls(https_addr, "mtls.example.com", &ca_der, None, "/m")
    )
    .await
    .is_err());
    assert!(bounded(
        "stranger's cert",
        get_tls(
            https_addr,
            "mtls.example.com",
            &ca_der,
            Some(&stranger),
            "/m"
        )
    )
    .await
    .is_err());
    let (_, answer) = bounded(
        "client cert",
        get_tls(https_addr, "mtls.example.com", &ca_der, Some(&client), "/m"),
    )
    .await
    .unwrap();
    assert_eq!(answer, (200, String::new(), "a /m".into()));

    // Removing the plain listener: it stops accepting; the other stays.
    let errors = gateway.apply(&[&https], find);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(gateway.names(), vec!["0.0.0.0_443".to_string()]);
    eventually_async("removed listener closed", LIMIT, || async {
        tokio::net::TcpStream::connect(http_addr).await.is_err()
    })
    .await;
    let (_, answer) = bounded(
        "a again",
        get_tls(https_addr, "a.example.com", &ca_der, None, "/a"),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, 200);

    // A new certificate in the credential directory is served after the
    // next update of the listener.
    let renewed = ca.leaf("b.example.com", ExtendedKeyUsagePurpose::ServerAuth);
    write(&credentials.join("b-cred/tls.crt"), &renewed.pem);
    write(&credentials.join("b-cred/tls.key"), &renewed.key_pem);
    assert!(gateway.apply(&[&https], find).is_empty());
    let (presented, _) = bounded(
        "b renewed",
        get_tls(https_addr, "b.example.com", &ca_der, None, "/b"),
    )
    .await
    .unwrap();
    assert_eq!(presented, renewed.der, "the renewed certificate");

    // A certificate that cannot be read: the update is refused and the
    // listener keeps serving its previous version.
    std::fs::remove_file(credentials.join("b-cred/tls.key")).unwrap();
    assert_eq!(gateway.apply(&[&https], find).len(), 1);
    let (presented, _) = bounded(
        "b kept",
        get_tls(https_addr, "b.example.com", &ca_der, None, "/b"),
    )
    .await
    .unwrap();
    assert_eq!(presented, renewed.der);

    drain.send_replace(true);
    bounded("drained", gateway.finished()).await;
    let _ = std::fs::remove_dir_all(files);
    let _ = std::fs::remove_dir_all(credentials);
}
