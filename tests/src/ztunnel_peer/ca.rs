//! Workload certificates the way ztunnel obtains them: a fresh key and a
//! CSR whose only URI SAN is the workload's SPIFFE identity, sent to
//! `IstioCertificateService/CreateCertificate` with the request metadata
//! `ImpersonatedIdentity` (the node proxy asks on a pod's behalf) and the
//! `clusterid` gRPC header; an answer for any other identity is refused.
use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use anyhow::Context as _;
use mesh_xds::proto::{
    istio_ca::{
        istio_certificate_service_client::IstioCertificateServiceClient, IstioCertificateRequest,
    },
    wkt::{value::Kind, Struct, Value},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Istio's default cluster id (`CLUSTER_ID`).
pub const CLUSTER_ID: &str = "Kubernetes";

/// One workload's certificate, key and the mesh roots.
#[derive(Debug)]
pub struct Identity {
    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`
    pub spiffe: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Vec<CertificateDer<'static>>,
}

/// Asks the CA at `ca` (plaintext gRPC, from the calling thread's network
/// namespace) for `spiffe`'s certificate; `root_pem` is the mesh root.
pub async fn impersonated(
    ca: SocketAddr,
    spiffe: &str,
    root_pem: &Path,
) -> anyhow::Result<Identity> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![rcgen::SanType::URI(rcgen::Ia5String::try_from(spiffe)?)];
    let csr = params.serialize_request(&key)?.pem()?;
    let metadata = Struct {
        fields: BTreeMap::from([(
            "ImpersonatedIdentity".to_string(),
            Value {
                kind: Some(Kind::StringValue(spiffe.to_string())),
            },
        )])
        .into_iter()
        .collect(),
    };
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: Some(metadata),
    });
    request
        .metadata_mut()
        .insert("clusterid", CLUSTER_ID.parse().expect("ASCII"));
    let mut client = IstioCertificateServiceClient::connect(format!("http://{ca}"))
        .await
        .with_context(|| format!("connecting to the CA at {ca}"))?;
    let answer = client
        .create_certificate(request)
        .await
        .with_context(|| format!("CreateCertificate for {spiffe}"))?
        .into_inner();
    let mut chain = Vec::new();
    for pem in &answer.cert_chain {
        for der in rustls_pemfile::certs(&mut pem.as_bytes()) {
            chain.push(der?);
        }
    }
    let leaf = chain.first().context("the CA answered no certificate")?;
    let sans = super::tls::uri_sans(leaf);
    anyhow::ensure!(
        sans.iter().any(|s| s == spiffe),
        "the CA answered a certificate for {sans:?}, not {spiffe}"
    );
    let roots = rustls_pemfile::certs(&mut std::fs::read(root_pem)?.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Identity {
        spiffe: spiffe.to_string(),
        chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        roots,
    })
}
