//! Certificates from a CA reached through a connection that stalls: the
//! first TCP connection to the CA address is accepted and never answered
//! (a half-open peer); every later one reaches a working CA.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use mesh_hbone::{test_ca::TestCa, CertStore};
use mesh_xds::proto::istio_ca::{
    istio_certificate_service_server::{IstioCertificateService, IstioCertificateServiceServer},
    IstioCertificateRequest, IstioCertificateResponse,
};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::watch,
};

use super::CertManager;
use crate::mesh::ca_client::{CaClient, CaSettings};
use crate::state::fixtures::view;

struct FakeCa(Arc<TestCa>);

#[tonic::async_trait]
impl IstioCertificateService for FakeCa {
    async fn create_certificate(
        &self,
        request: tonic::Request<IstioCertificateRequest>,
    ) -> Result<tonic::Response<IstioCertificateResponse>, tonic::Status> {
        let leaf = self
            .0
            .sign_csr(&request.get_ref().csr, Duration::from_secs(3600))
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        Ok(tonic::Response::new(IstioCertificateResponse {
            cert_chain: vec![leaf, self.0.pem()],
        }))
    }
}

async fn working_ca(ca: Arc<TestCa>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming =
        tonic::transport::server::TcpIncoming::from_listener(listener, true, None).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IstioCertificateServiceServer::new(FakeCa(ca)))
            .serve_with_incoming(incoming),
    );
    addr
}

/// The CA address: its first connection is a black hole, the rest are
/// relayed to `backend`.
async fn first_connection_stalls(backend: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stalled, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 4096];
            while matches!(stalled.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut ca = TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut ca).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_stalled_ca_connection_does_not_stop_issuance() {
    let ca = Arc::new(TestCa::new("mesh root"));
    let backend = working_ca(Arc::clone(&ca)).await;
    let front = first_connection_stalls(backend).await;
    let store = Arc::new(CertStore::new(ca.bundle()));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{front}")).unwrap();
    let settings = CaSettings {
        request_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(50),
        ..CaSettings::default()
    };
    let manager = CertManager {
        store: Arc::clone(&store),
        ca: Arc::new(CaClient::new(endpoint, None, settings)),
        ttl: Duration::from_secs(3600),
        issued: Arc::default(),
        token: None,
        wrong_identity: Arc::default(),
    };
    let (_view_tx, view_rx) = watch::channel(Arc::new(view()));
    let task = tokio::spawn(manager.run(view_rx));
    // Node n1 runs pods a and b.
    let mut issued = 0;
    for _ in 0..600 {
        issued = store.identities().len();
        if issued == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    assert_eq!(issued, 2, "certificates issued within 60 s");
}
