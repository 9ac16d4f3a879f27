//! `podhttp`'s server: the HTTP demo app that test pods run in place of the
//! Istio course's bookinfo-like services (with a Spring-style actuator).
//!
//! One port serves HTTP/1.1 and h2c with prior knowledge (hyper-util's auto
//! builder looks at the connection preface), because waypoints and agents
//! may reach an app with either. Every reply names the pod and version that
//! produced it, so tests can count which subset answered; stdout carries a
//! `{"ready":…}` line once listening and one `{"request":…}` line per request.
use std::{net::IpAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::json;

mod handler;
mod switches;

pub use handler::Instance;

/// What one `podhttp serve` instance is and how it behaves by default.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Listen address; the default `::` is dual-stack.
    #[arg(long, default_value = "::")]
    pub bind: IpAddr,
    /// Listen port; 0 picks a free one (the ready line says which).
    #[arg(long, default_value_t = 9080)]
    pub port: u16,
    /// Pod name, reported in every reply and in the `x-pod` header.
    #[arg(long)]
    pub pod: String,
    /// App version (the DestinationRule subset), reported in every reply
    /// and in the `x-version` header.
    #[arg(long, default_value = "v1")]
    pub version: String,
    /// Delay before every non-actuator reply unless a request asks for its
    /// own (e.g. a v3 that is always slow).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Status of every non-actuator reply unless a request asks for its own.
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub fail_status: Option<u16>,
}

impl Config {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

/// Binds, prints the ready line, then serves until the process is killed.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((config.bind, config.port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind, config.port))?;
    let port = listener.local_addr()?.port();
    let instance = Arc::new(Instance::new(config));
    println_json(&json!({"ready": true, "port": port}));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Typically EMFILE: back off instead of spinning on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let instance = Arc::clone(&instance);
        tokio::spawn(async move {
            let service = service_fn(move |req| Arc::clone(&instance).handle(req));
            // A client that goes away mid-request is normal in fault tests.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One JSON line on stdout, flushed at once: the harness reads it live.
pub(crate) fn println_json(value: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}
