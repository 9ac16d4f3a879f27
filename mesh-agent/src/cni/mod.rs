//! The agent's side of the CNI plugin (`--cni-socket`): the HTTP API the
//! plugin calls on ADD/DEL/CHECK (server.rs), the decision of whether a pod
//! is captured (decide.rs), the pod records that survive restarts
//! (records.rs) and the reconciler that keeps the enrolment map equal to
//! the xDS view (reconcile.rs). Without `--cni-socket` none of this runs
//! and pods are enrolled by `mesh-agent enroll` as before.
//!
//! ADD fails closed: the agent answers only once it knows the pod from the
//! xDS view (waiting at most `--enroll-wait`), and answers 503 otherwise,
//! which makes the plugin fail the ADD so the runtime retries. A pod's
//! containers start after ADD, so an ambient pod never runs uncaptured.
pub mod decide;
pub mod reconcile;
pub mod records;
pub mod server;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::sync::watch;

use self::records::RecordStore;
use crate::{
    capture::{
        enroll::{EnrollError, Enroller},
        netns,
        pins::PinLayout,
    },
    state::view::MeshView,
};

/// What `--cni-socket` and its companions configure.
#[derive(Debug, Clone)]
pub struct CniSettings {
    pub socket: PathBuf,
    pub records: PathBuf,
    pub enroll_wait: Duration,
    pub proc_root: PathBuf,
    pub netns_dir: PathBuf,
}

/// Records and the enrolment maps, behind one lock: ADD, DEL and the
/// reconciler never interleave on one pod.
pub struct CniCore {
    pub records: RecordStore,
    pub enroller: Enroller,
    pub settings: CniSettings,
    /// Unrecorded pods already looked for by a scan.
    scanned: BTreeSet<String>,
}

pub type Shared = Arc<Mutex<CniCore>>;

impl CniCore {
    /// Enrols (`true`) or unenrols the namespace at `path`; its cookie.
    pub fn apply(&mut self, path: &Path, enroll: bool) -> Result<u64, EnrollError> {
        if enroll {
            self.enroller.enroll(path, &[])
        } else {
            let cookie = netns::cookie_of(path)?;
            self.enroller.unenroll_cookie(cookie)?;
            Ok(cookie)
        }
    }

    /// Whether the namespace with `cookie` is in the enrolment map.
    pub fn is_enrolled(&self, cookie: u64) -> bool {
        self.enroller
            .list()
            .iter()
            .any(|p| p.netns_cookie == cookie)
    }
}

/// Opens the records, binds the socket and starts the server and the
/// reconciler (first pass at once, then on every view change).
pub async fn start(
    settings: CniSettings,
    layout: &PinLayout,
    view: watch::Receiver<Arc<MeshView>>,
) -> anyhow::Result<()> {
    let records = RecordStore::open(&settings.records)?;
    let core = Arc::new(Mutex::new(CniCore {
        records,
        enroller: Enroller::open(layout).context("opening the enrolment maps for CNI")?,
        settings: settings.clone(),
        scanned: BTreeSet::new(),
    }));
    let listener = server::bind(&settings.socket)?;
    tracing::info!(socket = %settings.socket.display(), records = %settings.records.display(), wait = ?settings.enroll_wait, "CNI server listening");
    tokio::spawn(server::serve(
        listener,
        Arc::clone(&core),
        view.clone(),
        settings.enroll_wait,
    ));
    tokio::spawn(reconcile_loop(core, view));
    Ok(())
}

async fn reconcile_loop(core: Shared, mut view: watch::Receiver<Arc<MeshView>>) {
    loop {
        let current = Arc::clone(&view.borrow_and_update());
        let core = Arc::clone(&core);
        // Entering namespaces and map syscalls block: off the runtime.
        let done = tokio::task::spawn_blocking(move || {
            core.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reconcile(&current);
        })
        .await;
        if let Err(error) = done {
            tracing::error!(%error, "CNI reconcile pass panicked");
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}
