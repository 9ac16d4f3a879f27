//! A client can fail handshakes as fast as it can connect; the server's
//! log must not grow with it. Alone in its binary: it installs the
//! process-wide subscriber that counts warnings.

mod support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use mesh_testkit::{eventually_async, holds};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::{layer::SubscriberExt as _, Layer};

struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if meta.target().starts_with("mesh_hbone") && *meta.level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_logged_at_a_bounded_rate() {
    let warnings = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(CountWarnings(warnings.clone())),
    )
    .unwrap();
    bounded(async {
        let ca = TestCa::new("mesh root");
        let server = start_server(ca.store(&[&id("backend", "api")])).await;
        const ATTEMPTS: u64 = 30;
        for _ in 0..ATTEMPTS {
            let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink).await;
        }
        eventually_async("every handshake failed", WAIT, || async {
            let n = server.stats.handshake_failures();
            holds(n == ATTEMPTS, &n)
        })
        .await;
        let logged = warnings.load(Ordering::SeqCst);
        assert!(
            logged <= 2,
            "{logged} warnings for {ATTEMPTS} failed handshakes"
        );
    })
    .await
}
