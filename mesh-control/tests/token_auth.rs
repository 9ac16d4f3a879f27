//! Token authentication of the gRPC server (docs/contracts/authentication.md),
//! in process on 127.0.0.1:0 with the real CA and real CSRs, through a
//! fake [`Authenticator`] (the TokenReview client is tested against an HTTP
//! responder in `authn::token_review`, and end to end against the fake API
//! server in tests/tests/kube_source/).
use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use mesh_control::{
    authn::{AuthError, AuthPolicy, Authenticator, Caller},
    ca::Ca,
    model::{MeshState, Workload},
    serve::{self, ConnectedProxies, ServerOptions},
};
use mesh_xds::proto::{
    envoy_core,
    envoy_discovery::{
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        DeltaDiscoveryRequest,
    },
    istio_ca::{
        istio_certificate_service_client::IstioCertificateServiceClient, IstioCertificateRequest,
    },
};
use mesh_xds::ADDRESS_TYPE_URL;
use rcgen::{CertificateParams, KeyPair, SanType};
use tokio::{net::TcpListener, sync::oneshot};

const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Tokens: `web` → default/web bound to pod web-1; `agent-a` → the node
/// agent of node-a; anything else refused.
struct Tokens;

#[tonic::async_trait]
impl Authenticator for Tokens {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let caller = |ns: &str, sa: &str, pod: Option<&str>, node: Option<&str>| Caller {
            namespace: ns.into(),
            service_account: sa.into(),
            pod_name: pod.map(Into::into),
            node_name: node.map(Into::into),
        };
        match token {
            "web" => Ok(caller("default", "web", Some("web-1"), None)),
            "agent-a" => Ok(caller("istio-system", "mesh-agent", None, Some("node-a"))),
            _ => Err(AuthError::Rejected("unknown token".into())),
        }
    }
}

fn state() -> MeshState {
    let mut state = MeshState {
        trust_domain: "cluster.local".into(),
        ..MeshState::default()
    };
    for (name, sa, node) in [("web-1", "web", "node-a"), ("db-1", "db", "node-b")] {
        let uid = format!("Kubernetes//Pod/default/{name}");
        state.workloads.insert(
            uid.clone(),
            Workload {
                uid,
                name: name.into(),
                namespace: "default".into(),
                service_account: sa.into(),
                ips: vec![],
                node: node.into(),
                labels: BTreeMap::new(),
                mesh: true,
                services: BTreeMap::new(),
                probe_ports: vec![],
            },
        );
    }
    state
}

fn csr(ns: &str, sa: &str) -> String {
    let mut params = CertificateParams::default();
    let uri = format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
    params
        .subject_alt_names
        .push(SanType::URI(rcgen::Ia5String::try_from(uri).unwrap()));
    let key = KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// The server, stopped on drop.
struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.abort();
    }
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_state_tx, state) = tokio::sync::watch::channel(Arc::new(state()));
    let ca = Arc::new(Ca::generate("cluster.local", Duration::from_secs(86400)).unwrap());
    let options = ServerOptions {
        auth: Some(AuthPolicy {
            authenticator: Arc::new(Tokens),
            node_agents: vec![("istio-system".into(), "mesh-agent".into())],
            trust_domain: "cluster.local".into(),
        }),
        ..ServerOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _keep = _state_tx;
        serve::serve_listener(
            listener,
            None,
            state,
            ca,
            Arc::new(ConnectedProxies::new()),
            options,
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    Running {
        url,
        stop: Some(stop),
        task,
    }
}

async fn certificate(
    url: &str,
    token: Option<&str>,
    ns: &str,
    sa: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = bounded(
        "connect CA",
        IstioCertificateServiceClient::connect(url.to_string()),
    )
    .await
    .unwrap();
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr: csr(ns, sa),
        validity_duration: 3600,
        metadata: None,
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    bounded("CreateCertificate", client.create_certificate(request))
        .await
        .map(|r| r.into_inner().cert_chain)
}

#[tokio::test]
async fn certificates_only_for_the_proven_identity_or_pods_on_the_agents_node() {
    let server = start().await;
    let url = &server.url;

    let err = certificate(url, None, "default", "web").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = certificate(url, Some("forged"), "default", "web")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("unknown token"), "{}", err.message());

    let chain = certificate(url, Some("web"), "default", "web")
        .await
        .unwrap();
    assert_eq!(chain.len(), 2);

    // A pod cannot obtain another identity's certificate.
    let err = certificate(url, Some("web"), "default", "db")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("spiffe://cluster.local/ns/default/sa/db")
            && err
                .message()
                .contains("proves spiffe://cluster.local/ns/default/sa/web"),
        "{}",
        err.message()
    );

    // The node agent of node-a: web (on node-a) yes, db (on node-b) no.
    certificate(url, Some("agent-a"), "default", "web")
        .await
        .unwrap();
    let err = certificate(url, Some("agent-a"), "default", "db")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn xds_streams_need_a_valid_token() {
    let server = start().await;
    let open = |token: Option<&'static str>| {
        let url = server.url.clone();
        async move {
            // envoy-types' generated client has no `connect` shortcut.
            let channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = AggregatedDiscoveryServiceClient::new(channel);
            let first = DeltaDiscoveryRequest {
                node: Some(envoy_core::Node {
                    id: "test".into(),
                    ..Default::default()
                }),
                type_url: ADDRESS_TYPE_URL.into(),
                ..Default::default()
            };
            // Keep the request stream open while reading the answer.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(first).await.unwrap();
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            let response = client.delta_aggregated_resources(request).await;
            let result = match response {
                Ok(stream) => stream.into_inner().message().await.map(|m| m.is_some()),
                Err(status) => Err(status),
            };
            drop(tx);
            result
        }
    };
    let err = bounded("stream without token", open(None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = bounded("stream with a bad token", open(Some("forged")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let answered = bounded("stream with a token", open(Some("web"))).await;
    assert!(matches!(answered, Ok(true)), "{answered:?}");
}
