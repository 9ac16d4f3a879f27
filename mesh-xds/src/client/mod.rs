//! Delta ADS client: one long-lived gRPC stream to the control plane with
//! wildcard subscriptions, typed validated caches, ACK/NACK, reconnect with
//! backoff and `initial_resource_versions`.
//!
//! ```text
//! let (handle, mut snapshots) = XdsClient::spawn(XdsClientConfig::new("http://10.0.0.1:15010", "node-1"));
//! while snapshots.changed().await.is_ok() {
//!     let snap = snapshots.borrow_and_update().clone();   // Arc<XdsSnapshot>
//!     for (uid, workload) in snap.workloads() { … }
//! }
//! handle.stop().await;
//! ```
mod config;
pub mod node_identity;
mod session;
mod snapshot;
mod validate;

use std::sync::Arc;

use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

pub use config::{Backoff, FieldRejection, Validator, XdsClientConfig, XdsTls, HEALTHY_STREAM};
pub use snapshot::{CachedResource, TypeCache, XdsResource, XdsSnapshot};
pub use validate::{decode_resource, InvalidResource};

/// Entry point: see [`XdsClient::spawn`].
pub struct XdsClient;

impl XdsClient {
    /// Starts the client on the current tokio runtime. The receiver always
    /// holds the latest snapshot (initially empty, `connected: false`).
    /// The client runs until [`XdsHandle::stop`] or until the handle is
    /// dropped.
    pub fn spawn(cfg: XdsClientConfig) -> (XdsHandle, watch::Receiver<Arc<XdsSnapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(XdsSnapshot::default()));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(session::run(cfg, tx, stop_rx));
        (
            XdsHandle {
                stop: Some(stop_tx),
                task: Some(task),
            },
            rx,
        )
    }
}

/// Controls a running client. Dropping it stops the client (the watch
/// receivers keep the last snapshot).
#[must_use = "dropping the handle stops the xDS client"]
pub struct XdsHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl XdsHandle {
    /// Stops the client and waits until its stream is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// True once the client task has ended (stopped, or its TLS settings
    /// were unusable; see `XdsSnapshot::last_error`).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for XdsHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
