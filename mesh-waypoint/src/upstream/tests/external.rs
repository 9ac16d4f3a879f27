//! Hosts outside the mesh: the cluster shapes a ServiceEntry host gets
//! (DNS, ORIGINAL_DST) read field by field, TLS contexts read and built,
//! handshakes against real rustls servers on 127.0.0.1 (SAN checks, a
//! client certificate from the credential directory), and DNS rounds
//! against a responder on 127.0.0.1 (STRICT keeps every address, LOGICAL
//! the first).
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            cluster::{
                ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy, OriginalDstLbConfig,
            },
            Cluster,
        },
        core::v3::{transport_socket::ConfigType, TransportSocket},
    },
    extensions::transport_sockets::tls::v3::{
        common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
        subject_alt_name_matcher::SanType,
        CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
        UpstreamTlsContext,
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher},
};
use hickory_proto::{
    op::{Message, OpCode},
    rr::{rdata::A, RData, Record},
};
use mesh_xds::proto::wkt;
use prost::Message as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType as RcSan};
use rustls::{server::WebPkiClientVerifier, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::upstream::{
    cluster::{tests::cla, ClusterConfig},
    discovery::{Discovery, DnsConfig, DnsTarget, Family},
    dns::{DnsResolver, Resolutions},
    tls::{ClientCert, San, Source, TlsOrigin, TlsSpec},
};

fn tls_socket(ctx: &UpstreamTlsContext) -> TransportSocket {
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

fn exact(san_type: SanType, value: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: None,
    }
}

#[test]
fn tls_contexts_are_read_as_istio_writes_them() {
    // credentialName: certificate and CA by SDS name, SANs beside them.
    let ctx = UpstreamTlsContext {
        sni: "api.example".into(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds("kubernetes://client")],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: vec![
                            exact(SanType::Dns, "api.example"),
                            exact(SanType::Uri, "spiffe://td/ns/a/sa/b"),
                            exact(SanType::IpAddress, "192.0.2.1"),
                        ],
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds("kubernetes://client-cacert")),
                    ..Default::default()
                },
            )),
            alpn_protocols: vec!["h2".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let spec = TlsSpec::from_proto(Some(&tls_socket(&ctx)))
        .unwrap()
        .unwrap();
    assert_eq!(
        spec,
        TlsSpec {
            sni: "api.example".into(),
            ca: Some(Source::Sds("kubernetes://client-cacert".into())),
            sans: vec![
                San::Dns("api.example".into()),
                San::Uri("spiffe://td/ns/a/sa/b".into()),
                San::Ip("192.0.2.1".parse().unwrap()),
            ],
            client: Some(ClientCert::Sds("kubernetes://client".into())),
            alpn: vec!["h2".into()],
        }
    );
    assert_eq!(TlsSpec::from_proto(None).unwrap(), None);

    let mut bad = tls_socket(&UpstreamTlsContext::default());
    bad.name = "envoy.transport_sockets.raw_buffer".into();
    assert_eq!(
        TlsSpec::from_proto(Some(&bad)).unwrap_err().0,
        "transport_socket.name"
    );
    let prefix = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: SanType::Dns as i32,
                        matcher: Some(StringMatcher {
                            match_pattern: Some(MatchPattern::Prefix("api".into())),
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
    assert_eq!(
        TlsSpec::from_proto(Some(&tls_socket(&prefix)))
            .unwrap_err()
            .0,
        "transport_socket.typed_config.common_tls_context.validation_context\
         .match_typed_subject_alt_names[0].matcher"
    );
    // An SDS name outside the credential directory is refused when built.
    let escape = TlsSpec {
        sni: String::new(),
        ca: Some(Source::Sds("kubernetes://../etc".into())),
        sans: vec![],
        client: None,
        alpn: vec![],
    };
    assert!(TlsOrigin::build(&escape, Path::new("/tmp"))
        .unwrap_err()
        .0
        .ends_with("validation_context_sds_secret_config.name"));
}

#[test]
#[allow(deprecated)]
fn dns_and_original_dst_clusters_are_read_and_checked() {
    let mut strict = Cluster {
        name: "c".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)),
        respect_dns_ttl: true,
        load_assignment: Some(cla("c", &["127.0.0.1:443".parse().unwrap()])),
        ..Default::default()
    };
    let Discovery::Dns(d) = ClusterConfig::from_proto(&strict).unwrap().discovery else {
        panic!("not DNS");
    };
    assert!(!d.logical && d.respect_ttl);
    assert_eq!(d.family, Family::Auto);
    assert_eq!(d.targets[0].port, 443);
    strict.load_assignment = None;
    assert_eq!(
        ClusterConfig::from_proto(&strict).unwrap_err().0,
        "load_assignment"
    );

    let passthrough = Cluster {
        name: "p".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        lb_config: Some(LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
            use_http_header: true,
            upstream_port_override: Some(wkt::UInt32Value { value: 443 }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let Discovery::OriginalDst(o) = ClusterConfig::from_proto(&passthrough).unwrap().discovery
    else {
        panic!("not ORIGINAL_DST");
    };
    assert_eq!(
        o.header.unwrap().as_str(),
        crate::upstream::discovery::ORIGINAL_DST_HEADER
    );
    assert_eq!(o.port_override, Some(443));
    // CLUSTER_PROVIDED belongs to ORIGINAL_DST clusters only.
    let eds = Cluster {
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        ..passthrough
    };
    assert_eq!(ClusterConfig::from_proto(&eds).unwrap_err().0, "lb_policy");
}

// ---- live TLS ----

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
            .push(DnType::CommonName, "upstream test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf with these SANs: `(pem, der, key pem, key der)`.
    fn leaf(&self, sans: Vec<RcSan>) -> (String, Vec<u8>, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (
            cert.pem(),
            cert.der().to_vec(),
            key.serialize_pem(),
            key.serialize_der(),
        )
    }
}

/// A TLS server on 127.0.0.1 presenting a leaf with `sans`; with
/// `client_ca` it requires a client certificate that CA signed. Each
/// accepted handshake writes "ok".
async fn server(ca: &Ca, sans: Vec<RcSan>, client_ca: Option<&Ca>) -> SocketAddr {
    let (_, der, _, key) = ca.leaf(sans);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(c) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from(c.cert.der().to_vec()))
                .unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder
        .with_single_cert(
            vec![CertificateDer::from(der)],
            PrivateKeyDer::try_from(key).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects through `origin`; the first bytes read, or the error.
async fn talk(origin: &TlsOrigin, addr: SocketAddr) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = origin.handshake(tcp).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mesh-waypoint-upstream-{what}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn subject_alt_names_decide_and_a_credential_gives_the_client_certificate() {
    let dir = temp_dir("tls");
    let ca = Ca::new();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    let uri = "spiffe://example.org/ns/egress/sa/api";
    let addr = server(
        &ca,
        vec![
            RcSan::DnsName("api.example".try_into().unwrap()),
            RcSan::URI(uri.try_into().unwrap()),
        ],
        None,
    )
    .await;
    let spec = |sans: Vec<San>| TlsSpec {
        sni: "api.example".into(),
        ca: Some(Source::File(dir.join("ca.pem"))),
        sans,
        client: None,
        alpn: vec![],
    };
    for ok in [
        vec![],
        vec![San::Dns("api.example".into())],
        vec![San::Dns("other.example".into()), San::Uri(uri.into())],
    ] {
        let origin = TlsOrigin::build(&spec(ok.clone()), &dir).unwrap();
        assert_eq!(talk(&origin, addr).await.as_deref(), Ok("ok"), "{ok:?}");
    }
    for wrong in [
        vec![San::Dns("other.example".into())],
        vec![San::Uri("spiffe://example.org/ns/egress/sa/other".into())],
        vec![San::Ip("127.0.0.1".parse().unwrap())],
    ] {
        let origin = TlsOrigin::build(&spec(wrong.clone()), &dir).unwrap();
        let e = talk(&origin, addr).await.unwrap_err();
        assert!(e.contains("NotValidForName"), "{wrong:?}: {e}");
    }
    // The system roots did not sign the test CA.
    let system = TlsSpec {
        ca: None,
        ..spec(vec![])
    };
    assert!(talk(&TlsOrigin::build(&system, &dir).unwrap(), addr)
        .await
        .is_err());

    // MUTUAL with credentialName: `<dir>/client/tls.crt|tls.key`, CA from
    // `<dir>/client/ca.crt`.
    let client_ca = Ca::new();
    let mtls = server(
        &ca,
        vec![RcSan::DnsName("api.example".try_into().unwrap())],
        Some(&client_ca),
    )
    .await;
    let (cert_pem, _, key_pem, _) =
        client_ca.leaf(vec![RcSan::DnsName("client".try_into().unwrap())]);
    let secret = dir.join("client");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("tls.crt"), cert_pem).unwrap();
    std::fs::write(secret.join("tls.key"), key_pem).unwrap();
    std::fs::write(secret.join("ca.crt"), ca.cert.pem()).unwrap();
    let mutual = TlsSpec {
        ca: Some(Source::Sds("kubernetes://client-cacert".into())),
        client: Some(ClientCert::Sds("kubernetes://client".into())),
        ..spec(vec![])
    };
    let origin = TlsOrigin::build(&mutual, &dir).unwrap();
    assert_eq!(talk(&origin, mtls).await.as_deref(), Ok("ok"));
    // Without the certificate the server refuses.
    let anonymous = TlsOrigin::build(&spec(vec![]), &dir).unwrap();
    assert!(talk(&anonymous, mtls).await.is_err());
    // A credential that is not there cannot be built.
    let missing = TlsSpec {
        client: Some(ClientCert::Sds("kubernetes://nobody".into())),
        ..spec(vec![])
    };
    assert!(TlsOrigin::build(&missing, &dir)
        .unwrap_err()
        .0
        .ends_with("tls_certificate_sds_secret_configs[0].name"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- DNS rounds ----

/// Answers every A query with 127.0.0.5 and 127.0.0.6, TTL 30 s.
async fn two_address_dns() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = req.queries.first().cloned() else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            if q.query_type() == hickory_proto::rr::RecordType::A {
                for ip in [[127, 0, 0, 5], [127, 0, 0, 6]] {
                    resp.add_answer(Record::from_rdata(
                        q.name().clone(),
                        30,
                        RData::A(A(ip.into())),
                    ));
                }
            }
            resp.add_query(q);
            let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test]
async fn strict_dns_keeps_every_address_logical_dns_the_first_and_ttls_set_the_pace() {
    let resolver = DnsResolver::new(Some(two_address_dns().await)).unwrap();
    let cfg = |logical: bool, respect_ttl: bool| DnsConfig {
        logical,
        targets: vec![DnsTarget {
            host: "db.example.test".into(),
            port: 5432,
        }],
        family: Family::V4Preferred,
        respect_ttl,
        refresh: Duration::from_secs(5),
        failure_refresh: Duration::from_secs(2),
    };
    let at = |ip: [u8; 4]| SocketAddr::from((ip, 5432));
    let (hosts, next) = Resolutions::default()
        .round(&resolver, "c", &cfg(false, true))
        .await;
    assert_eq!(hosts, vec![at([127, 0, 0, 5]), at([127, 0, 0, 6])]);
    assert!(
        next > Duration::from_secs(20) && next <= Duration::from_secs(30),
        "{next:?}"
    );
    let (hosts, next) = Resolutions::default()
        .round(&resolver, "c", &cfg(true, false))
        .await;
    assert_eq!(hosts, vec![at([127, 0, 0, 5])]);
    assert_eq!(
        next,
        Duration::from_secs(5),
        "the refresh rate without respect_dns_ttl"
    );
    // A name that does not resolve keeps its last hosts; retried sooner.
    let mut state = Resolutions::default();
    let mut c = cfg(false, true);
    state.round(&resolver, "c", &c).await;
    c.family = Family::V6Only;
    let (hosts, next) = state.round(&resolver, "c", &c).await;
    assert_eq!(hosts.len(), 2);
    assert_eq!(next, Duration::from_secs(2));
}
