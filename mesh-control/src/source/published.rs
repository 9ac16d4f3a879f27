//! [`SourceWatch`]: what every source (the polled directory, the
//! Kubernetes watchers) hands the rest of the control plane — the last
//! accepted state, its raw Istio resources and the last problem — so the
//! server, the admin endpoint and `app` treat both sources alike.
use std::sync::Arc;

use tokio::{sync::watch, task::JoinHandle};

use super::RawResource;
use crate::model::MeshState;

/// A running source. Dropping it leaves its tasks running as long as any
/// receiver it handed out is alive; [`SourceWatch::stop`] ends them.
pub struct SourceWatch {
    /// The last good state; changes only to a valid, different state.
    pub state: watch::Receiver<Arc<MeshState>>,
    /// The raw Istio resources of the last good load.
    pub raw: watch::Receiver<Arc<Vec<RawResource>>>,
    /// The problems of the last load attempt (one per line), `None` once a
    /// load succeeds again (the Kubernetes source: once no resource is
    /// rejected).
    pub last_error: watch::Receiver<Option<String>>,
    /// Reloads finished after the initial load, published or rejected (the
    /// directory source, source/watch.rs; the Kubernetes source counts
    /// none).
    pub reloads: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl SourceWatch {
    pub(crate) fn new(
        state: watch::Receiver<Arc<MeshState>>,
        raw: watch::Receiver<Arc<Vec<RawResource>>>,
        last_error: watch::Receiver<Option<String>>,
        tasks: Vec<JoinHandle<()>>,
    ) -> Self {
        SourceWatch {
            state,
            raw,
            last_error,
            reloads: watch::channel(0).1,
            tasks,
        }
    }

    /// Stops the source's tasks; receivers keep their last value.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Publishes `value` on `tx` only when it differs from the current one;
/// returns whether it did.
pub(crate) fn publish_if_changed<T: PartialEq>(tx: &watch::Sender<Arc<T>>, value: T) -> bool {
    tx.send_if_modified(|current| {
        let differs = **current != value;
        if differs {
            *current = Arc::new(value);
        }
        differs
    })
}
