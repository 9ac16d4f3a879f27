//! Certificate rotation: replacing certificates in the stores leaves
//! established tunnels running, and the next connection uses the new ones.

mod support;

use mesh_hbone::{ClientOptions, HboneClient};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_during_a_transfer() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server_store = ca.store(&[&b]); // serial 100
        let client_store = ca.store(&[&a]); // serial 100
        let server = start_server(server_store.clone()).await;
        let client = HboneClient::new(client_store.clone(), ClientOptions::default());

        let stream = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        assert_eq!(
            serial_of(stream.peer_certificate().unwrap()),
            serial_hex(100)
        );
        assert_eq!(
            serial_of(&server.handler.last_request().peer_certificate),
            serial_hex(100)
        );

        // Send the first half, rotate both sides, send the second half.
        let data = payload(16 << 20, 3);
        let half = data.len() / 2;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel();
        let (rotated_tx, rotated_rx) = tokio::sync::oneshot::channel::<()>();
        let to_send = data.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&to_send[..half]).await.unwrap();
            halfway_tx.send(()).unwrap();
            rotated_rx.await.unwrap();
            wr.write_all(&to_send[half..]).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut echoed = Vec::with_capacity(16 << 20);
            rd.read_to_end(&mut echoed).await.unwrap();
            echoed
        });

        halfway_rx.await.unwrap();
        let old_server = server_store.replace(ca.issue(&b, 201)).unwrap();
        let old_client = client_store.replace(ca.issue(&a, 202)).unwrap();
        assert_eq!(old_server.serial(), serial_hex(100));
        assert_eq!(old_client.serial(), serial_hex(100));
        assert_eq!(client_store.get(&a).unwrap().serial(), serial_hex(202));
        rotated_tx.send(()).unwrap();

        writer.await.unwrap();
        let echoed = reader.await.unwrap();
        assert_eq!(echoed.len(), data.len());
        assert!(echoed == data, "transfer across rotation corrupted");

        // A new tunnel: the pooled connection was dialled with the old client
        // certificate, so a new connection shows both new certificates.
        let mut fresh = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        assert_eq!(server.stats.connections_accepted(), 2);
        assert_eq!(
            serial_of(fresh.peer_certificate().unwrap()),
            serial_hex(201)
        );
        let seen = server.handler.last_request();
        assert_eq!(serial_of(&seen.peer_certificate), serial_hex(202));
        assert_eq!(seen.peer, a);

        fresh.write_all(b"after rotation").await.unwrap();
        fresh.shutdown().await.unwrap();
        let mut back = Vec::new();
        fresh.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"after rotation");
    })
    .await
}
