//! The agent's small HTTP servers under hostile clients: a client that
//! never finishes its request headers loses its connection.
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::admin::http::{self, text_response, Req};
use hyper::StatusCode;
use mesh_admin::http_serve::HttpLimits;

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = http::spawn(
        listener,
        HttpLimits::small(None),
        Arc::new(|_: &Req<'_>| text_response(StatusCode::OK, "ok")),
    );
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz/ready HTTP/1.1\r\nhost: agent\r\n")
        .await
        .unwrap();
    // Whatever the server answers (a 408 or nothing), it must close.
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), slow.read_to_end(&mut sink)).await;
    task.abort();
    assert!(
        closed.is_ok(),
        "a connection with unfinished headers is still open after 60 s"
    );
}
