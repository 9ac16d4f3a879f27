//! The mesh CA: workload certificates from CSRs (checked with webpki and
//! x509-parser), refusals, persistence across restarts, and the serving
//! certificate in a real TLS handshake on loopback.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mesh_control::ca::{self, Ca, CaError, ServerNames};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::{extensions::GeneralName, prelude::*};

const TD: &str = "cluster.local";

fn csr(sans: Vec<SanType>) -> String {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params
        .serialize_request(&KeyPair::generate().unwrap())
        .unwrap()
        .pem()
        .unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(rcgen::Ia5String::try_from(s).unwrap())
}

fn der(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies `leaf` chains to `root` for `usage`, at the current time.
fn verify(
    leaf: &CertificateDer<'_>,
    root: &CertificateDer<'_>,
    usage: webpki::KeyUsage,
) -> Result<(), webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(root)?;
    let cert = webpki::EndEntityCert::try_from(leaf)?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
}

#[test]
fn signs_a_spiffe_csr() {
    let ca = Ca::generate(TD, Duration::from_secs(3600)).unwrap();
    let spiffe = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
    let chain = ca
        .sign_csr(&csr(vec![uri(spiffe)]), Duration::from_secs(30))
        .unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], ca.root_pem());
    let (leaf_der, root_der) = (der(&chain[0]), der(&chain[1]));

    // Chains to the root, for both TLS client and server use.
    verify(&leaf_der, &root_der, webpki::KeyUsage::client_auth()).unwrap();
    verify(&leaf_der, &root_der, webpki::KeyUsage::server_auth()).unwrap();

    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, [format!("URI:{spiffe}")]);
    // The requested TTL, starting a minute in the past.
    let not_before = leaf.validity().not_before.timestamp() as u64;
    let not_after = leaf.validity().not_after.timestamp() as u64;
    let t = now();
    assert!(
        not_after.abs_diff(t + 30) <= 5,
        "not_after {not_after}, now {t}"
    );
    assert!(
        not_before.abs_diff(t - 60) <= 5,
        "not_before {not_before}, now {t}"
    );
    assert!(!leaf.is_ca());
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    // Random serials.
    let again = ca
        .sign_csr(&csr(vec![uri(spiffe)]), Duration::from_secs(30))
        .unwrap();
    let other_der = der(&again[0]);
    let (_, other) = X509Certificate::from_der(&other_der).unwrap();
    assert_ne!(leaf.raw_serial(), other.raw_serial());
}

#[test]
fn ttl_is_clamped() {
    let ca = Ca::generate(TD, Duration::from_secs(7 * 86400)).unwrap();
    let lifetime = |ttl| {
        let chain = ca
            .sign_csr(&csr(vec![uri("spiffe://cluster.local/ns/a/sa/b")]), ttl)
            .unwrap();
        let leaf_der = der(&chain[0]);
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        (leaf.validity().not_after.timestamp() as u64).saturating_sub(now())
    };
    assert!(lifetime(Duration::from_secs(1)).abs_diff(10) <= 5);
    assert!(lifetime(Duration::from_secs(3 * 86400)).abs_diff(86400) <= 5);
}

#[test]
fn refuses_other_identities() {
    let ca = Ca::generate(TD, Duration::from_secs(3600)).unwrap();
    let err = |sans| {
        ca.sign_csr(&csr(sans), Duration::from_secs(60))
            .unwrap_err()
    };

    let other_td = err(vec![uri("spiffe://evil.example/ns/default/sa/x")]);
    assert!(matches!(other_td, CaError::Identity(_)));
    assert_eq!(
        other_td.to_string(),
        "CSR identity refused: spiffe://evil.example/ns/default/sa/x is in trust domain \"evil.example\"; this CA signs only for \"cluster.local\""
    );

    let dns_only = err(vec![SanType::DnsName(
        "productpage.default.svc".try_into().unwrap(),
    )]);
    assert!(matches!(dns_only, CaError::Identity(_)));
    assert!(
        dns_only
            .to_string()
            .contains("DNS SAN (productpage.default.svc)"),
        "{dns_only}"
    );

    let not_workload = err(vec![uri("spiffe://cluster.local/some/path")]);
    assert!(
        not_workload
            .to_string()
            .contains("/ns/<namespace>/sa/<service account>"),
        "{not_workload}"
    );

    let garbage = ca.sign_csr(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        Duration::from_secs(60),
    );
    assert!(
        matches!(garbage, Err(CaError::InvalidCsr(_))),
        "{garbage:?}"
    );
}

#[test]
fn persisted_root_survives_a_restart() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let (first, generated) = Ca::load_or_generate(&ca_dir, TD, Duration::from_secs(3600)).unwrap();
    assert!(generated);
    let key_mode = std::fs::metadata(ca_dir.join(ca::KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&ca_dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let (second, generated) = Ca::load_or_generate(&ca_dir, TD, Duration::from_secs(3600)).unwrap();
    assert!(!generated);
    assert_eq!(first.root_pem(), second.root_pem());
    // The reloaded CA issues certificates the old trust bundle accepts.
    let chain = second
        .sign_csr(
            &csr(vec![uri("spiffe://cluster.local/ns/a/sa/b")]),
            Duration::from_secs(60),
        )
        .unwrap();
    verify(
        &der(&chain[0]),
        &der(first.root_pem()),
        webpki::KeyUsage::client_auth(),
    )
    .unwrap();

    // Explicit load from PEM, as an operator-provided root.
    let cert = std::fs::read_to_string(ca_dir.join(ca::CERT_FILE)).unwrap();
    let key = std::fs::read_to_string(ca_dir.join(ca::KEY_FILE)).unwrap();
    assert_eq!(
        Ca::load(TD, &cert, &key).unwrap().root_pem(),
        first.root_pem()
    );
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    assert!(Ca::load(TD, &cert, &other_key)
        .unwrap_err()
        .to_string()
        .contains("does not belong"));

    // Half a CA is never overwritten.
    std::fs::remove_file(ca_dir.join(ca::KEY_FILE)).unwrap();
    let err = Ca::load_or_generate(&ca_dir, TD, Duration::from_secs(3600)).unwrap_err();
    assert!(err.to_string().contains("ca-key.pem does not"), "{err}");
    assert_eq!(
        std::fs::read_to_string(ca_dir.join(ca::CERT_FILE)).unwrap(),
        cert
    );
}

#[test]
fn server_certificate_names() {
    let ca = Ca::generate(TD, Duration::from_secs(3600)).unwrap();
    let issued = ca
        .issue_server_cert(
            &["mesh-control.istio-system.svc".to_string()],
            &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))],
            Duration::from_secs(600),
        )
        .unwrap();
    let (leaf_der, root_der) = (der(&issued.chain_pem[0]), der(ca.root_pem()));
    verify(&leaf_der, &root_der, webpki::KeyUsage::server_auth()).unwrap();
    let cert = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    for name in ["mesh-control.istio-system.svc", "10.0.0.254"] {
        cert.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
            .unwrap();
    }
    assert!(cert
        .verify_is_valid_for_subject_name(&ServerName::try_from("other.svc").unwrap())
        .is_err());
    assert!(issued.key_pem.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn tls_handshake_with_the_serving_certificate() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ca = Arc::new(Ca::generate(TD, Duration::from_secs(3600)).unwrap());
    let names = ServerNames {
        dns: vec!["mesh-control.istio-system.svc".into()],
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    };
    let acceptor = ca::server_tls_acceptor(ca.clone(), names, Duration::from_secs(600)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        tls.write_all(b"hello").await.unwrap();
        tls.shutdown().await.unwrap();
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca.root_pem())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let run = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut got = vec![];
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("handshake timed out");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
