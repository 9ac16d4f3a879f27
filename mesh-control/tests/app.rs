//! The whole control plane in-process on loopback: built from a
//! `ControlConfig` with temporary directories, an xDS client over TLS
//! (trusting only `<ca-dir>/root-cert.pem`) sees the directory's workloads
//! and a change to it, the CA service signs a CSR, a restart keeps the
//! root. Every wait is bounded.
use std::{future::Future, path::Path, time::Duration};

use mesh_control::app::{App, ControlConfig};
use mesh_testkit::{eventually_watch, holds};
use mesh_xds::{
    proto::istio_ca::{
        istio_certificate_service_client::IstioCertificateServiceClient, IstioCertificateRequest,
    },
    Backoff, XdsClient, XdsClientConfig, XdsTls,
};
use tokio::sync::oneshot;

const TOPOLOGY: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels: {istio.io/dataplane-mode: ambient}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: node-1, serviceAccountName: a}\nstatus: {podIP: 10.244.1.2}\n";

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

struct Running {
    tls_addr: std::net::SocketAddr,
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: ControlConfig) -> Running {
    let app = App::build(config).await.unwrap();
    let (addr, tls_addr) = (app.xds_addr(), app.xds_tls_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Running {
        tls_addr,
        addr,
        stop,
        task,
    }
}

impl Running {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        bounded("shutdown", self.task).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn serves_the_directory_over_tls_and_signs_csrs() {
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, ca_dir) = (dir.path().join("config"), dir.path().join("ca"));
    std::fs::create_dir(&config_dir).unwrap();
    write(&config_dir, "00-topology.yaml", TOPOLOGY);
    let mut config = ControlConfig::for_dirs(&config_dir, &ca_dir);
    config.reload_interval = Duration::from_millis(20);
    let running = start(config.clone()).await;
    let bundle = std::fs::read(ca_dir.join("root-cert.pem")).unwrap();

    // xDS over TLS, verifying the serving certificate for 127.0.0.1
    // against the trust bundle written for agents.
    let mut xds = XdsClientConfig::new(format!("https://{}", running.tls_addr), "node-1");
    xds.tls = Some(XdsTls {
        root_pem: bundle.clone(),
        client_cert: None,
        server_name: None,
    });
    xds.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (client, mut snapshots) = XdsClient::spawn(xds);
    eventually_watch("workload a", LIMIT, &mut snapshots, |s| {
        holds(
            s.connected && s.workload("Kubernetes//Pod/default/a").is_some(),
            s,
        )
    })
    .await;

    // A change to the directory reaches the client.
    write(
        &config_dir,
        "10-b.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.3}\n",
    );
    eventually_watch("workload b", LIMIT, &mut snapshots, |s| {
        holds(s.workload("Kubernetes//Pod/default/b").is_some(), s)
    })
    .await;
    bounded("client stop", client.stop()).await;

    // The CA service (plaintext port) signs a SPIFFE CSR with the mesh root.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::Ia5String::try_from("spiffe://cluster.local/ns/default/sa/a").unwrap(),
    )];
    let csr = params
        .serialize_request(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
        .unwrap();
    let mut ca = bounded(
        "connect",
        IstioCertificateServiceClient::connect(format!("http://{}", running.addr)),
    )
    .await
    .unwrap();
    let chain = bounded(
        "sign",
        ca.create_certificate(IstioCertificateRequest {
            csr: csr.clone(),
            validity_duration: 600,
            metadata: None,
        }),
    )
    .await
    .unwrap()
    .into_inner()
    .cert_chain;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].as_bytes(), bundle.as_slice());
    // A CSR for another trust domain is refused with the CA's reason.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::Ia5String::try_from("spiffe://other.example/ns/default/sa/a").unwrap(),
    )];
    let bad = params
        .serialize_request(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
        .unwrap();
    let status = bounded(
        "refuse",
        ca.create_certificate(IstioCertificateRequest {
            csr: bad,
            validity_duration: 600,
            metadata: None,
        }),
    )
    .await
    .unwrap_err();
    assert!(
        status.message().contains("trust domain \"other.example\""),
        "{status:?}"
    );

    running.shutdown().await;

    // A restart keeps the root (agents keep their trust bundle).
    let running = start(config).await;
    assert_eq!(std::fs::read(ca_dir.join("root-cert.pem")).unwrap(), bundle);
    running.shutdown().await;
}

#[tokio::test]
async fn invalid_configuration_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, ca_dir) = (dir.path().join("config"), dir.path().join("ca"));
    let missing = App::build(ControlConfig::for_dirs(&config_dir, &ca_dir))
        .await
        .err()
        .unwrap();
    assert_eq!(
        format!("{missing:#}"),
        format!(
            "loading the configuration directory: configuration directory {}: does not exist",
            config_dir.display()
        )
    );
    std::fs::create_dir(&config_dir).unwrap();
    write(
        &config_dir,
        "pods.yaml",
        &TOPOLOGY.replace("10.244.1.2", "10.244.1.x"),
    );
    let invalid = App::build(ControlConfig::for_dirs(&config_dir, &ca_dir))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{invalid:#}").contains(
            r#"pods.yaml: Pod default/a: status.podIP: "10.244.1.x" is not an IP address"#
        ),
        "{invalid:#}"
    );
    // Nothing was written before the configuration was known to be good.
    assert!(!ca_dir.exists());
}

/// Without authentication, anyone who reaches the gRPC ports obtains any
/// identity: a non-loopback bind must be chosen with an explicit
/// `--authenticate none`, never reached by defaults.
#[tokio::test]
async fn unauthenticated_non_loopback_bind_needs_an_explicit_choice() {
    use mesh_control::app::AuthMode;
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, ca_dir) = (dir.path().join("config"), dir.path().join("ca"));
    std::fs::create_dir(&config_dir).unwrap();
    write(&config_dir, "pods.yaml", TOPOLOGY);
    let exposed = ControlConfig {
        xds_addr: "0.0.0.0:0".parse().unwrap(),
        ..ControlConfig::for_dirs(&config_dir, &ca_dir)
    };
    let refused = App::build(exposed.clone()).await.err().expect("refused");
    assert!(
        format!("{refused:#}").contains("--authenticate none"),
        "{refused:#}"
    );
    let chosen = ControlConfig {
        authenticate: Some(AuthMode::None),
        ..exposed
    };
    let app = App::build(chosen).await.unwrap();
    assert!(app.xds_addr().ip().is_unspecified());
}
