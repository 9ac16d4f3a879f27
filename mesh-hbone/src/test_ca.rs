//! A throwaway certificate authority for tests and local tools: a
//! self-signed root issuing SPIFFE leaf certificates (URI SAN, server and
//! client auth). Not for production: the mesh CA lives in `mesh-control`.
use std::{sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

use crate::{CertStore, Identity, TrustBundle, WorkloadCert};

/// A root key and certificate.
pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("test CA");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("test CA");
        TestCa { key, cert }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_pem(self.pem()).expect("test CA")
    }

    /// PEM chain and PEM key of a leaf with the given URI SANs.
    pub fn issue_pem(&self, uris: &[String], serial: u64, valid_for: Duration) -> (String, String) {
        let key = KeyPair::generate().expect("test CA");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("test CA");
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().expect("test CA")))
            .collect();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.serial_number = Some(SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::try_from(valid_for).expect("test CA");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("test CA");
        (cert.pem(), key.serialize_pem())
    }

    /// Signs a PEM CSR as the mesh CA would (its SANs kept, server and
    /// client auth); the PEM leaf.
    pub fn sign_csr(&self, csr_pem: &str, valid_for: Duration) -> Result<String, rcgen::Error> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::minutes(5);
        csr.params.not_after =
            now + time::Duration::try_from(valid_for).map_err(|_| rcgen::Error::Time)?;
        Ok(csr.signed_by(&self.cert, &self.key)?.pem())
    }

    pub fn issue(&self, identity: &Identity, serial: u64) -> WorkloadCert {
        self.issue_for(identity, serial, Duration::from_secs(24 * 3600))
    }

    pub fn issue_for(&self, identity: &Identity, serial: u64, valid_for: Duration) -> WorkloadCert {
        let (chain, key) = self.issue_pem(&[identity.to_string()], serial, valid_for);
        WorkloadCert::from_pem(chain, key).expect("test CA")
    }

    /// A store trusting this CA and holding certificates for `ids`.
    pub fn store(&self, ids: &[&Identity]) -> Arc<CertStore> {
        let store = Arc::new(CertStore::new(self.bundle()));
        for (n, identity) in ids.iter().enumerate() {
            store.insert(self.issue(identity, 100 + n as u64));
        }
        store
    }
}
