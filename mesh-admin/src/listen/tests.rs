//! Caps observed from real loopback clients (127.0.0.1 and 127.0.0.2 are
//! two sources).
use std::time::Duration;

use tokio::{
    io::AsyncReadExt,
    net::{TcpSocket, TcpStream},
};

use super::*;

async fn listener(limits: Limits) -> (Listener, SocketAddr) {
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = inner.local_addr().unwrap();
    (Listener::new(inner, limits, "test"), addr)
}

async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until EOF or reset, bounded so a hang fails the test.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_source_over_its_cap_is_closed_and_others_still_get_in() {
    let (mut listener, addr) = listener(Limits {
        max_connections: 100,
        max_per_source: Some(1),
    })
    .await;
    let _first = connect_from([127, 0, 0, 1], addr).await;
    let held = listener.accept().await;
    assert_eq!(held.peer.ip(), std::net::Ipv4Addr::LOCALHOST);

    let mut second = connect_from([127, 0, 0, 1], addr).await;
    let _other = connect_from([127, 0, 0, 2], addr).await;
    let next = listener.accept().await;
    assert_eq!(
        next.peer.ip(),
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        "the second connection of 127.0.0.1 was accepted"
    );
    assert!(
        closed_by_server(&mut second).await,
        "refused connection left open"
    );

    // A freed slot is usable again.
    drop(held);
    let _third = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(
        listener.accept().await.peer.ip(),
        std::net::Ipv4Addr::LOCALHOST
    );
}

#[tokio::test]
async fn at_the_total_cap_the_next_connection_waits_for_a_free_slot() {
    let (mut listener, addr) = listener(Limits {
        max_connections: 1,
        max_per_source: None,
    })
    .await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let held = listener.accept().await;
    let _b = TcpStream::connect(addr).await.unwrap();
    assert_eq!(listener.total.available_permits(), 0);
    let waiting = tokio::spawn(async move { listener.accept().await.peer });
    drop(held);
    let peer = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("accepted once the slot was freed")
        .unwrap();
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
}
