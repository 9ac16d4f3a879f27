//! `--role gateway` with a `MUTUAL` TLS server and an RBAC policy naming a
//! principal, in process on 127.0.0.1 over real TLS: the SPIFFE URI SAN
//! of the verified client certificate is the request's source principal,
//! so the client it names is allowed, another SPIFFE identity and a
//! certificate without one are denied (403), and the allowed request is
//! counted with its `source_principal`.
mod support;

use std::{collections::HashMap, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use envoy_types::pb::envoy::{
    config::{
        cluster::v3::Cluster,
        core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
        listener::v3::{filter, Filter, FilterChain, FilterChainMatch, Listener},
        rbac::v3::{
            permission::Rule,
            principal::{Authenticated, Identifier},
            Permission, Policy, Principal, Rbac,
        },
        route::v3::{
            route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
            RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        },
    },
    extensions::{
        filters::{
            http::rbac::v3::Rbac as RbacFilter,
            network::http_connection_manager::v3::{
                http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
                HttpFilter, Rds,
            },
        },
        transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, CommonTlsContext, DownstreamTlsContext,
            SdsSecretConfig,
        },
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher},
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_waypoint::{
    app::wiring::{
        ClusterManager, Telemetry, TelemetryObserver, TelemetryOptions, UpstreamOptions,
    },
    gateway::ListenerManager,
    route::Deps,
    telemetry::labels::Reporter,
};
use mesh_xds::proto::wkt;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(10);
const HOST: &str = "mtls.example.com";
const CLIENT: &str = "spiffe://cluster.local/ns/outside/sa/client";
const OTHER: &str = "spiffe://cluster.local/ns/outside/sa/other";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, DER and PEM.
struct Leaf {
    der: Vec<u8>,
    pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mutual test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn uri(u: &str) -> SanType {
    SanType::URI(u.try_into().unwrap())
}

fn write(path: &Path, pem: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, pem).unwrap();
}

fn any<M: Message>(type_name: &str, m: &M) -> wkt::Any {
    wkt::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

/// AuthorizationPolicy ALLOW `principals: [cluster.local/ns/outside/sa/client]`
/// as istiod writes it.
fn allow_client() -> RbacFilter {
    RbacFilter {
        rules: Some(Rbac {
            action: 0,
            policies: HashMap::from([(
                "ns[istio-system]-policy[outside-client]-rule[0]".to_string(),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(Rule::Any(true)),
                    }],
                    principals: vec![Principal {
                        identifier: Some(Identifier::Authenticated(Authenticated {
                            principal_name: Some(StringMatcher {
                                ignore_case: false,
                                match_pattern: Some(MatchPattern::Exact(CLIENT.into())),
                            }),
                        })),
                    }],
                    ..Default::default()
                },
            )]),
            audit_logging_options: None,
        }),
        ..Default::default()
    }
}

/// HTTPS for `HOST` with credentialName `m-cred` and MUTUAL, RBAC then
/// the router.
fn mutual_listener() -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: "https".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: "https.443".into(),
        })),
        http_filters: vec![
            HttpFilter {
                name: "envoy.filters.http.rbac".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(
                    "envoy.extensions.filters.http.rbac.v3.RBAC",
                    &allow_client(),
                ))),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(wkt::Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                        .into(),
                    value: vec![],
                })),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let sds = |name: &str| SdsSecretConfig {
        name: name.into(),
        ..Default::default()
    };
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds("kubernetes://m-cred")],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                sds("kubernetes://m-cred-cacert"),
            )),
            alpn_protocols: vec!["http/1.1".into()],
            ..Default::default()
        }),
        require_client_certificate: Some(wkt::BoolValue { value: true }),
        ..Default::default()
    };
    Listener {
        name: "0.0.0.0_443".into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(0)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![HOST.into()],
                ..Default::default()
            }),
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(
                    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &hcm,
                ))),
            }],
            transport_socket: Some(envoy_types::pb::envoy::config::core::v3::TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(
                    envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                        any(
                            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            &tls,
                        ),
                    ),
                ),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn routes() -> RouteConfiguration {
    RouteConfiguration {
        name: "https.443".into(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{HOST}:443"),
            domains: vec![HOST.into(), format!("{HOST}:*")],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster("app".into())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An HTTP server answering `app <path>`.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("app {}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// `GET path` over TLS to `HOST` with `client`'s certificate: status and
/// body.
async fn get(
    addr: SocketAddr,
    ca: &Ca,
    client: &Leaf,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert.der().to_vec()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from(client.der.clone())],
        PrivateKeyDer::try_from(client.key_der.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST)?, tcp)
        .await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", HOST)
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn bounded(
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<(u16, String)>>,
) -> (u16, String) {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
        .unwrap_or_else(|e| panic!("{what}: {e:#}"))
}

/// A directory removed when the test ends, passed or failed.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_client_certificate_names_the_rbac_principal() {
    let ca = Ca::new();
    let dir = TempDir(std::env::temp_dir().join(format!(
        "mesh-waypoint-gateway-mutual-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    let credentials = dir.0.clone();
    let server = ca.leaf(vec![dns(HOST)], ExtendedKeyUsagePurpose::ServerAuth);
    write(&credentials.join("m-cred/tls.crt"), &server.pem);
    write(&credentials.join("m-cred/tls.key"), &server.key_pem);
    write(&credentials.join("m-cred/ca.crt"), &ca.cert.pem());
    let usage = ExtendedKeyUsagePurpose::ClientAuth;
    let client = ca.leaf(vec![dns("client.outside"), uri(CLIENT)], usage.clone());
    let other = ca.leaf(vec![uri(OTHER)], usage.clone());
    let no_spiffe = ca.leaf(vec![dns("client.outside")], usage);

    let clusters = ClusterManager::new(UpstreamOptions {
        hbone: None,
        identity: None,
    });
    let app = upstream().await;
    clusters.apply_resources(
        [&Cluster {
            name: "app".into(),
            ..Default::default()
        }],
        [&support::cla("app", app)],
        Default::default(),
    );
    let telemetry = Telemetry::new(TelemetryOptions {
        reporter: Reporter::Source,
        ..Default::default()
    });
    let mut deps = Deps::new(clusters.clone());
    deps.observer = Arc::new(TelemetryObserver {
        telemetry: telemetry.clone(),
        clusters: clusters.clone(),
    });
    let (drain, drain_rx) = tokio::sync::watch::channel(false);
    let gateway = ListenerManager::new(deps, credentials.clone(), drain_rx);
    let rc = routes();
    let errors = gateway.apply(&[&mutual_listener()], |n| (n == rc.name).then_some(&rc));
    assert!(errors.is_empty(), "{errors:?}");
    let addr = gateway.local_addr("0.0.0.0_443").unwrap();

    assert_eq!(
        bounded("allowed", get(addr, &ca, &client, "/in")).await,
        (200, "app /in".into())
    );
    assert_eq!(bounded("other", get(addr, &ca, &other, "/in")).await.0, 403);
    assert_eq!(
        bounded("no SPIFFE SAN", get(addr, &ca, &no_spiffe, "/in"))
            .await
            .0,
        403
    );

    // The gateway reports itself as the source (Istio's gateways do; the
    // client's principal is RBAC's input, proven by the 200/403 split
    // above, and the access log's `downstream_peer_principal`).
    let text = telemetry.encode_metrics();
    let count = |code: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains("reporter=\"source\"")
                    && l.contains(&format!("response_code=\"{code}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    assert_eq!((count("200"), count("403")), (1, 2), "{text}");
    assert!(
        !text.contains(&format!("source_principal=\"{CLIENT}\"")),
        "the client is not the source: {text}"
    );

    drain.send_replace(true);
    tokio::time::timeout(LIMIT, gateway.finished())
        .await
        .unwrap();
}
