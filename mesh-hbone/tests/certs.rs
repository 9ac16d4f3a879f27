//! Certificate parsing and the cert store's bookkeeping.

mod support;

use std::time::Duration;

use mesh_hbone::{sni_for, CertError, CertStore, TrustBundle, WorkloadCert};
use support::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

#[test]
fn identity_comes_from_the_uri_san() {
    let ca = TestCa::new("mesh root");
    let a = id("shop", "cart");
    let cert = ca.issue_for(&a, 42, DAY);
    assert_eq!(cert.identity(), &a);
    assert_eq!(cert.serial(), "2a");
    assert_eq!(cert.chain().len(), 1);
    let left = cert
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > DAY - Duration::from_secs(120) && left <= DAY,
        "{left:?}"
    );
}

#[test]
fn bad_certificates_are_refused_with_the_reason() {
    let ca = TestCa::new("mesh root");
    let (chain, key) = ca.issue_pem(&[], 1, DAY);
    assert!(matches!(
        WorkloadCert::from_pem(&chain, &key),
        Err(CertError::NoSpiffeId { .. })
    ));

    let two = [
        "spiffe://cluster.local/ns/a/sa/x".to_string(),
        "spiffe://cluster.local/ns/a/sa/y".to_string(),
    ];
    let (chain, key) = ca.issue_pem(&two, 2, DAY);
    assert!(matches!(
        WorkloadCert::from_pem(&chain, &key),
        Err(CertError::ManySpiffeIds { count: 2, .. })
    ));

    let (chain, key) = ca.issue_pem(&["spiffe://cluster.local/team/a".to_string()], 3, DAY);
    let err = WorkloadCert::from_pem(&chain, &key).unwrap_err();
    assert!(matches!(err, CertError::BadSpiffeId { .. }), "{err:?}");
    assert!(
        err.to_string().contains("spiffe://cluster.local/team/a"),
        "{err}"
    );

    // The key of another certificate.
    let (chain, _) = ca.issue_pem(&[id("a", "x").to_string()], 4, DAY);
    let (_, other_key) = ca.issue_pem(&[id("a", "y").to_string()], 5, DAY);
    let err = WorkloadCert::from_pem(&chain, &other_key).unwrap_err();
    assert!(matches!(err, CertError::Key { .. }), "{err:?}");

    assert!(matches!(
        WorkloadCert::from_pem("", &other_key),
        Err(CertError::EmptyChain)
    ));
    assert!(matches!(
        WorkloadCert::from_pem(&chain, ""),
        Err(CertError::NoKey)
    ));
    assert!(matches!(
        TrustBundle::from_pem("not pem"),
        Err(CertError::EmptyBundle)
    ));
}

#[test]
fn store_rotates_indexes_by_sni_and_reports_expiry() {
    let ca = TestCa::new("mesh root");
    let store = CertStore::new(ca.bundle());
    let (a, b) = (id("ns", "a"), id("ns", "b"));
    assert!(store
        .insert(ca.issue_for(&a, 1, Duration::from_secs(600)))
        .is_none());
    store.insert(ca.issue_for(&b, 2, 30 * DAY));
    assert_eq!(store.len(), 2);

    assert_eq!(store.identity_for_sni(&sni_for(&b)), Some(b.clone()));
    assert_eq!(store.get_by_sni(&sni_for(&a)).unwrap().serial(), "1");
    assert!(store.get_by_sni("unknown.ns.sa.cluster.local").is_none());

    let due = store.expiring_within(Duration::from_secs(3600));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].identity(), &a);
    assert_eq!(store.expiring_within(60 * DAY).len(), 2);

    let old = store.replace(ca.issue_for(&a, 3, DAY)).unwrap();
    assert_eq!(old.serial(), "1");
    assert_eq!(store.get(&a).unwrap().serial(), "3");
    assert!(store.expiring_within(Duration::from_secs(3600)).is_empty());

    assert_eq!(store.remove(&a).unwrap().serial(), "3");
    assert!(store.get(&a).is_none());
    assert!(store.identity_for_sni(&sni_for(&a)).is_none());
    assert_eq!(store.identities(), vec![b]);
}
