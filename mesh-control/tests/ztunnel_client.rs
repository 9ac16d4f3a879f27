//! Conformance with Istio's ztunnel as a client of the control plane: a
//! test client that behaves on the wire as ztunnel does (node id
//! `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, its node metadata,
//! `authorization` and `clusterid` gRPC headers, Delta ADS wildcard
//! subscriptions to Address and Authorization, certificate requests with
//! `ImpersonatedIdentity`), against the real server over real TLS (the
//! serving certificate of the mesh CA, port 0 on 127.0.0.1) with the real
//! CA, through a fake token [`Authenticator`].
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use mesh_control::{
    authn::{AuthError, AuthPolicy, Authenticator, Caller},
    ca::{self, Ca, ServerNames},
    model::{authz::AuthzAction, AuthorizationPolicy, MeshState, Node, Workload},
    serve::{self, ConnectedProxies, ServerOptions},
};
use mesh_xds::{
    proto::{
        envoy_core,
        envoy_discovery::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse,
        },
        istio_ca::{
            istio_certificate_service_client::IstioCertificateServiceClient,
            IstioCertificateRequest,
        },
        istio_security::Authorization,
        istio_workload::{address, Address},
        wkt::{value::Kind, Struct, Value},
    },
    transport::TlsConnector,
    XdsTls, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};
use prost::Message as _;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::Channel;

const LIMIT: Duration = Duration::from_secs(10);
const TD: &str = "cluster.local";

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// `ztunnel-a`: Istio's ztunnel on node-a; `agent-a`: our agent on node-a;
/// `impostor`: an account named ztunnel outside istio-system, on node-a.
struct Tokens;

#[tonic::async_trait]
impl Authenticator for Tokens {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let caller = |ns: &str, sa: &str| Caller {
            namespace: ns.into(),
            service_account: sa.into(),
            pod_name: None,
            node_name: Some("node-a".into()),
        };
        match token {
            "ztunnel-a" => Ok(caller("istio-system", "ztunnel")),
            "agent-a" => Ok(caller("istio-system", "mesh-agent")),
            "impostor" => Ok(caller("default", "ztunnel")),
            _ => Err(AuthError::Rejected("unknown token".into())),
        }
    }
}

fn pod(name: &str, sa: &str, ip: &str, node: &str) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/default/{name}"),
        name: name.into(),
        namespace: "default".into(),
        service_account: sa.into(),
        ips: vec![ip.parse().unwrap()],
        node: node.into(),
        labels: BTreeMap::new(),
        mesh: true,
        services: BTreeMap::new(),
        probe_ports: vec![],
    }
}

fn policy(name: &str, action: AuthzAction) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        namespace: "default".into(),
        file: "test".into(),
        selector: None,
        target_refs: vec![],
        action,
        rules: vec![],
        dry_run: false,
    }
}

/// web-1 on node-a, db-1 on node-b; a DENY and an AUDIT policy.
fn state() -> MeshState {
    let mut state = MeshState {
        trust_domain: TD.into(),
        ..MeshState::default()
    };
    for w in [
        pod("web-1", "web", "10.244.1.5", "node-a"),
        pod("db-1", "db", "10.244.2.5", "node-b"),
    ] {
        state.workloads.insert(w.uid.clone(), w);
    }
    for (name, ip) in [("node-a", "172.18.0.2"), ("node-b", "172.18.0.3")] {
        state.nodes.insert(
            name.into(),
            Node {
                name: name.into(),
                address: ip.parse().unwrap(),
            },
        );
    }
    state
        .authorization_policies
        .push(policy("deny-nothing", AuthzAction::Deny));
    state
        .authorization_policies
        .push(policy("audit-all", AuthzAction::Audit));
    state
}

/// The server over TLS, stopped on drop.
struct Running {
    addr: SocketAddr,
    root_pem: String,
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
    let addr = listener.local_addr().unwrap();
    let ca = Arc::new(Ca::generate(TD, Duration::from_secs(86400)).unwrap());
    let names = ServerNames {
        dns: vec!["istiod.istio-system.svc".into()],
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    };
    let acceptor = ca::server_tls_acceptor(ca.clone(), names, Duration::from_secs(600)).unwrap();
    let (state_tx, state_rx) = tokio::sync::watch::channel(Arc::new(state()));
    let options = ServerOptions {
        auth: Some(AuthPolicy {
            authenticator: Arc::new(Tokens),
            // --ca-trusted-node-accounts istio-system/mesh-agent,istio-system/ztunnel
            node_agents: vec![
                ("istio-system".into(), "mesh-agent".into()),
                ("istio-system".into(), "ztunnel".into()),
            ],
            trust_domain: TD.into(),
        }),
        ..ServerOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let root_pem = ca.root_pem().to_string();
    let task = tokio::spawn(async move {
        let _keep = state_tx;
        serve::serve_listener(
            listener,
            Some(acceptor),
            state_rx,
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
        addr,
        root_pem,
        stop: Some(stop),
        task,
    }
}

/// A TLS channel verifying the serving certificate against the mesh root.
async fn channel(server: &Running) -> Channel {
    let tls = TlsConnector::new(&XdsTls {
        root_pem: server.root_pem.clone().into_bytes(),
        client_cert: None,
        server_name: None,
    })
    .unwrap();
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("https://{}", server.addr)).unwrap();
    bounded("TLS connect", endpoint.connect_with_connector(tls))
        .await
        .unwrap()
}

/// gRPC metadata as ztunnel sends it.
fn headers<T>(mut request: tonic::Request<T>, token: &str, cluster: &str) -> tonic::Request<T> {
    let md = request.metadata_mut();
    md.insert("authorization", format!("Bearer {token}").parse().unwrap());
    md.insert("clusterid", cluster.parse().unwrap());
    request
}

fn strings(pairs: &[(&str, &str)]) -> Struct {
    Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue(v.to_string())),
                };
                (k.to_string(), value)
            })
            .collect(),
    }
}

/// ztunnel's node: id and metadata (NAME, NAMESPACE, INSTANCE_IPS,
/// NODE_NAME, and CLUSTER_ID from ISTIO_META_CLUSTER_ID); `extra` adds keys.
fn ztunnel_node(extra: &[(&str, &str)]) -> envoy_core::Node {
    let mut meta = vec![
        ("NAME", "ztunnel-x7k2p"),
        ("NAMESPACE", "istio-system"),
        ("INSTANCE_IPS", "172.18.0.2"),
        ("NODE_NAME", "node-a"),
        ("CLUSTER_ID", "Kubernetes"),
    ];
    meta.extend_from_slice(extra);
    envoy_core::Node {
        id: "ztunnel~172.18.0.2~ztunnel-x7k2p.istio-system~istio-system.svc.cluster.local".into(),
        metadata: Some(strings(&meta)),
        ..Default::default()
    }
}

/// What one stream received: Address names, and Authorization name →
/// action, each decoded as ztunnel decodes them.
#[derive(Debug, Default)]
struct Received {
    addresses: BTreeSet<String>,
    actions: BTreeMap<String, i32>,
}

/// Opens a Delta ADS stream as ztunnel does (one initial request per
/// type, each with the node, wildcard), reads until both types answered
/// (ACKing each response), and returns what came.
async fn subscribe(
    server: &Running,
    token: &str,
    cluster: &str,
    node: envoy_core::Node,
) -> Result<Received, tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::new(channel(server).await);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for type_url in [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL] {
        tx.send(DeltaDiscoveryRequest {
            node: Some(node.clone()),
            type_url: type_url.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let request = headers(
        tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
        token,
        cluster,
    );
    let mut responses = bounded("open ADS", client.delta_aggregated_resources(request))
        .await?
        .into_inner();
    let mut got = Received::default();
    let mut answered = BTreeSet::new();
    while answered.len() < 2 {
        let resp: DeltaDiscoveryResponse = bounded("ADS response", responses.message())
            .await?
            .expect("stream open");
        for r in &resp.resources {
            let any = r.resource.as_ref().expect("resource body");
            assert_eq!(any.type_url, resp.type_url);
            if resp.type_url == ADDRESS_TYPE_URL {
                let a = Address::decode(any.value.as_slice()).expect("Address decodes");
                assert!(matches!(
                    a.r#type,
                    Some(address::Type::Workload(_) | address::Type::Service(_))
                ));
                got.addresses.insert(r.name.clone());
            } else {
                let p = Authorization::decode(any.value.as_slice()).expect("Authorization decodes");
                got.actions.insert(r.name.clone(), p.action);
            }
        }
        answered.insert(resp.type_url.clone());
        tx.send(DeltaDiscoveryRequest {
            type_url: resp.type_url,
            response_nonce: resp.nonce,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    Ok(got)
}

/// Istio's `istio.security.Action` values, all a ztunnel decodes.
const ZTUNNEL_ACTIONS: [i32; 2] = [0, 1];

#[tokio::test]
async fn a_ztunnel_stream_gets_what_it_can_decode_and_no_audit_policy() {
    let server = start().await;

    let ztunnel = subscribe(&server, "ztunnel-a", "Kubernetes", ztunnel_node(&[]))
        .await
        .unwrap();
    assert!(
        ztunnel.addresses.contains("Kubernetes//Pod/default/web-1"),
        "{ztunnel:?}"
    );
    assert!(
        ztunnel.actions.contains_key("default/deny-nothing"),
        "{ztunnel:?}"
    );
    assert!(
        ztunnel
            .actions
            .values()
            .all(|a| ZTUNNEL_ACTIONS.contains(a)),
        "an action ztunnel cannot decode: {ztunnel:?}"
    );
    assert!(
        !ztunnel.actions.contains_key("default/audit-all"),
        "{ztunnel:?}"
    );

    // Our agent presents the same node form plus MESH_AGENT_VERSION, and
    // gets the AUDIT policy it logs.
    let agent = subscribe(
        &server,
        "agent-a",
        "Kubernetes",
        ztunnel_node(&[("MESH_AGENT_VERSION", "0.1.0")]),
    )
    .await
    .unwrap();
    assert_eq!(
        agent.actions.get("default/audit-all"),
        Some(&2),
        "{agent:?}"
    );

    // A cluster this control plane does not serve: refused before anything.
    let err = subscribe(&server, "ztunnel-a", "west", ztunnel_node(&[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("\"west\""), "{}", err.message());
}

fn csr(identity: &str) -> String {
    let mut params = rcgen::CertificateParams::default();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(identity.try_into().unwrap()));
    let key = rcgen::KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// A certificate request as ztunnel sends it: a CSR for `identity`,
/// `ImpersonatedIdentity` = `impersonated`, the token and `clusterid`.
async fn impersonate(
    server: &Running,
    token: &str,
    identity: &str,
    impersonated: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = IstioCertificateServiceClient::new(channel(server).await);
    let request = IstioCertificateRequest {
        csr: csr(identity),
        validity_duration: 3600,
        metadata: Some(strings(&[("ImpersonatedIdentity", impersonated)])),
    };
    let request = headers(tonic::Request::new(request), token, "Kubernetes");
    bounded("CreateCertificate", client.create_certificate(request))
        .await
        .map(|r| r.into_inner().cert_chain)
}

/// The URI SANs of a PEM certificate.
fn uris(pem: &str) -> Vec<String> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn impersonated_certificates_only_for_trusted_nodes_and_their_pods() {
    let server = start().await;
    let web = "spiffe://cluster.local/ns/default/sa/web";
    let db = "spiffe://cluster.local/ns/default/sa/db";

    // A trusted node account, a pod on its node: signed for the pod.
    let chain = impersonate(&server, "ztunnel-a", web, web).await.unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(uris(&chain[0]), [web]);
    // Our agent's account, by the same rule.
    let chain = impersonate(&server, "agent-a", web, web).await.unwrap();
    assert_eq!(uris(&chain[0]), [web]);

    // A pod on another node.
    let err = impersonate(&server, "ztunnel-a", db, db).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("node node-a"), "{}", err.message());

    // A caller that is no trusted node account, on the pod's node.
    let err = impersonate(&server, "impostor", web, web)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("not a trusted node account"),
        "{}",
        err.message()
    );

    // ImpersonatedIdentity must be what the CSR asks for.
    let err = impersonate(&server, "ztunnel-a", web, db)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("ImpersonatedIdentity"),
        "{}",
        err.message()
    );
}
