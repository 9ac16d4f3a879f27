use super::*;

fn csr(uris: &[&str], dns: &[&str]) -> String {
    let mut params = CertificateParams::default();
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI(rcgen::Ia5String::try_from(*uri).unwrap()));
    }
    for name in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(rcgen::Ia5String::try_from(*name).unwrap()));
    }
    let key = KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn pem_encoding_matches_rcgen() {
    let key = KeyPair::generate().unwrap();
    for _ in 0..3 {
        let cert = CertificateParams::new(vec!["a.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            pem_encode("CERTIFICATE", cert.der()),
            cert.pem().replace("\r\n", "\n")
        );
    }
}

#[test]
fn serials_are_positive_sixteen_bytes() {
    for _ in 0..64 {
        let serial = random_serial();
        let bytes = serial.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert!(bytes[0] & 0x80 == 0 && bytes[0] != 0);
    }
}

#[test]
fn identity_rules() {
    let ca = Ca::generate("cluster.local", Duration::from_secs(3600)).unwrap();
    let id = ca
        .csr_identity(&csr(&["spiffe://cluster.local/ns/a/sa/b"], &[]))
        .unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/a/sa/b");
    let err = |pem: String| ca.csr_identity(&pem).unwrap_err().to_string();
    assert!(err(csr(&[], &[])).contains("no URI SAN"));
    assert!(err(csr(
        &[
            "spiffe://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/c"
        ],
        &[]
    ))
    .contains("2 URI SANs"));
    assert!(
        err(csr(&["spiffe://cluster.local/ns/a/sa/b"], &["b.a.svc"])).contains("DNS SAN (b.a.svc)")
    );
    assert!(err(csr(&["spiffe://other.td/ns/a/sa/b"], &[])).contains("trust domain \"other.td\""));
    assert!(err("garbage".into()).starts_with("invalid CSR"));
    let other = Identity {
        trust_domain: "cluster.local".into(),
        namespace: "a".into(),
        service_account: "c".into(),
    };
    let mismatch = ca
        .sign_csr_for(
            &csr(&["spiffe://cluster.local/ns/a/sa/b"], &[]),
            &other,
            Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(
        matches!(mismatch, CaError::IdentityMismatch { .. }),
        "{mismatch}"
    );
}

#[test]
fn leaf_lifetime_is_clamped_to_the_root() {
    let ca = Ca::generate("cluster.local", Duration::from_secs(120)).unwrap();
    let chain = ca
        .sign_csr(
            &csr(&["spiffe://cluster.local/ns/a/sa/b"], &[]),
            Duration::from_secs(3600),
        )
        .unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain[0].as_bytes()).unwrap();
    let leaf = pem.parse_x509().unwrap();
    assert!(leaf.validity().not_after.to_datetime() <= ca.root_not_after());
}
