//! The agent as istiod's client, against small gRPC servers on 127.0.0.1:0
//! that record what they receive: its xDS stream carries ztunnel's node id
//! form, node metadata and `clusterid` header; its certificate requests
//! carry the pod's identity as `ImpersonatedIdentity`, the agent's token
//! and `clusterid`; an answer signed for another identity is refused.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_hbone::{CertStore, Identity};
use mesh_xds::{
    proto::{
        envoy_discovery::DeltaDiscoveryRequest,
        istio_ca::{
            istio_certificate_service_server::{
                IstioCertificateService, IstioCertificateServiceServer,
            },
            IstioCertificateRequest, IstioCertificateResponse,
        },
        wkt::value::Kind,
    },
    test_ads, XdsClient,
};
use tokio::{net::TcpListener, sync::watch};
use tonic::{Request, Response, Status};

use crate::{
    config::MeshConfig,
    mesh::{
        ca_client::{CaClient, CaSettings, FetchError},
        certs::{CertError, CertManager},
    },
    state::fixtures::view,
};

const LIMIT: Duration = Duration::from_secs(10);

/// A token file removed on drop.
struct TokenFile(std::path::PathBuf);

impl TokenFile {
    fn new(token: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "mesh-agent-identity-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, token).unwrap();
        TokenFile(path)
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn mesh(endpoint: &str, token: &TokenFile) -> MeshConfig {
    MeshConfig {
        node_name: "node-a".into(),
        xds_address: endpoint.into(),
        ca_address: endpoint.into(),
        trust_bundle: "/unused".into(),
        hbone_addr: None,
        cert_ttl: Duration::from_secs(3600),
        token_file: Some(token.0.clone()),
        cluster_id: "east".into(),
        pod_name: "mesh-agent-x7k2p".into(),
        pod_namespace: "istio-system".into(),
    }
}

async fn serve(router: tonic::transport::server::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming =
        tonic::transport::server::TcpIncoming::from_listener(listener, true, None).unwrap();
    tokio::spawn(router.serve_with_incoming(incoming));
    addr
}

fn text<'a>(req: &'a DeltaDiscoveryRequest, key: &str) -> Option<&'a str> {
    let node = req.node.as_ref()?;
    match &node.metadata.as_ref()?.fields.get(key)?.kind {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

#[tokio::test]
async fn the_xds_stream_presents_the_agent_as_a_ztunnel_node() {
    let mut ads = test_ads::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let token = TokenFile::new("agent-token");
    let cfg = super::xds_config(
        &mesh(&format!("http://{}", ads.addr()), &token),
        "10.0.0.1".parse().unwrap(),
    );
    let (client, _snapshots) = XdsClient::spawn(cfg);
    let mut stream = ads.accept().await;
    let first = stream.next().await;
    let metadata = stream.metadata.clone();
    client.stop().await;

    assert_eq!(metadata.get("clusterid").unwrap(), "east");
    assert_eq!(metadata.get("authorization").unwrap(), "Bearer agent-token");
    let node = first
        .node
        .as_ref()
        .expect("the first request carries the node");
    assert_eq!(
        node.id,
        "ztunnel~10.0.0.1~mesh-agent-x7k2p.istio-system~istio-system.svc.cluster.local"
    );
    for (key, want) in [
        ("NAME", "mesh-agent-x7k2p"),
        ("NAMESPACE", "istio-system"),
        ("INSTANCE_IPS", "10.0.0.1"),
        ("NODE_NAME", "node-a"),
        ("CLUSTER_ID", "east"),
        ("MESH_AGENT_VERSION", env!("CARGO_PKG_VERSION")),
    ] {
        assert_eq!(text(&first, key), Some(want), "node metadata {key}");
    }
}

/// What the CA does with a request.
#[derive(Clone, Copy, PartialEq)]
enum Signs {
    /// The CSR's own identity, as asked.
    AsAsked,
    /// The caller's identity instead (istiod ignoring the impersonation).
    TheCallers,
}

/// What the CA saw of a request: metadata `clusterid` and `authorization`,
/// `ImpersonatedIdentity`, the CSR's URI SANs.
#[derive(Debug, Clone, Default)]
struct CaSeen {
    cluster_id: Option<String>,
    authorization: Option<String>,
    impersonated: Option<String>,
    csr_uris: Vec<String>,
}

struct RecordingCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    signs: Signs,
    seen: Arc<Mutex<Vec<CaSeen>>>,
}

impl RecordingCa {
    fn new(signs: Signs) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        RecordingCa {
            key,
            cert,
            signs,
            seen: Arc::default(),
        }
    }
}

#[tonic::async_trait]
impl IstioCertificateService for RecordingCa {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let header = |k: &str| {
            request
                .metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let impersonated = request
            .get_ref()
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get("ImpersonatedIdentity"))
            .and_then(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            });
        let mut csr =
            rcgen::CertificateSigningRequestParams::from_pem(&request.get_ref().csr).unwrap();
        let csr_uris = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|s| match s {
                rcgen::SanType::URI(u) => Some(u.as_str().to_string()),
                _ => None,
            })
            .collect();
        self.seen.lock().unwrap().push(CaSeen {
            cluster_id: header("clusterid"),
            authorization: header("authorization"),
            impersonated,
            csr_uris,
        });
        if self.signs == Signs::TheCallers {
            let caller = "spiffe://cluster.local/ns/istio-system/sa/mesh-agent";
            csr.params.subject_alt_names = vec![rcgen::SanType::URI(caller.try_into().unwrap())];
        }
        let leaf = csr.signed_by(&self.cert, &self.key).unwrap();
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: vec![leaf.pem(), self.cert.pem()],
        }))
    }
}

async fn ca(signs: Signs) -> (SocketAddr, Arc<Mutex<Vec<CaSeen>>>) {
    let ca = RecordingCa::new(signs);
    let seen = Arc::clone(&ca.seen);
    let addr = serve(
        tonic::transport::Server::builder().add_service(IstioCertificateServiceServer::new(ca)),
    )
    .await;
    (addr, seen)
}

fn client(addr: SocketAddr, mesh: &MeshConfig) -> CaClient {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    CaClient::new(endpoint, None, CaSettings::default()).with_request(super::ca_request(mesh))
}

#[tokio::test]
async fn certificate_requests_impersonate_the_pod_and_name_the_cluster() {
    let (addr, seen) = ca(Signs::AsAsked).await;
    let token = TokenFile::new("agent-token");
    let mesh = mesh(&format!("http://{addr}"), &token);
    let pod: Identity = "spiffe://cluster.local/ns/default/sa/web".parse().unwrap();
    let token_file = mesh_xds::token::TokenFile::new(&token.0);
    let cert = tokio::time::timeout(
        LIMIT,
        client(addr, &mesh).issue(&pod, Duration::from_secs(3600), Some(&token_file)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cert.identity(), &pod);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].cluster_id.as_deref(), Some("east"));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer agent-token"));
    assert_eq!(
        seen[0].impersonated.as_deref(),
        Some(pod.to_string().as_str())
    );
    assert_eq!(seen[0].csr_uris, [pod.to_string()]);
}

#[tokio::test]
async fn a_certificate_for_another_identity_is_refused_and_never_used() {
    let (addr, seen) = ca(Signs::TheCallers).await;
    let token = TokenFile::new("agent-token");
    let mesh = mesh(&format!("http://{addr}"), &token);
    let pod: Identity = "spiffe://cluster.local/ns/default/sa/a".parse().unwrap();
    let err = tokio::time::timeout(
        LIMIT,
        client(addr, &mesh).issue(&pod, Duration::from_secs(3600), None),
    )
    .await
    .unwrap()
    .unwrap_err();
    match &err {
        FetchError::Issue(CertError::WrongIdentity { requested, got }) => {
            assert_eq!(requested, &pod);
            assert_eq!(
                got.to_string(),
                "spiffe://cluster.local/ns/istio-system/sa/mesh-agent"
            );
        }
        other => panic!("expected WrongIdentity, got {other}"),
    }
    assert!(err.to_string().contains("not used"), "{err}");

    // The manager keeps none and counts the refusals. Node n1 of the
    // fixture runs pods a and b.
    let store = Arc::new(CertStore::new(
        mesh_hbone::test_ca::TestCa::new("unused").bundle(),
    ));
    let manager = CertManager {
        store: Arc::clone(&store),
        ca: Arc::new(client(addr, &mesh)),
        ttl: Duration::from_secs(3600),
        issued: Arc::default(),
        token: None,
        wrong_identity: Arc::default(),
    };
    let refused = Arc::clone(&manager.wrong_identity);
    let (_view_tx, view_rx) = watch::channel(Arc::new(view()));
    let task = tokio::spawn(manager.run(view_rx));
    let mut count = 0;
    for _ in 0..100 {
        count = refused.load(std::sync::atomic::Ordering::Relaxed);
        if count >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    assert!(count >= 2, "both identities refused, got {count}");
    assert!(store.identities().is_empty(), "{:?}", store.identities());
    assert!(seen.lock().unwrap().len() >= 3);
}
