//! Hot reload of the directory source by polling.
//!
//! Every `interval` the watcher lists the directory and compares each YAML
//! file's name, size, modification/change time and inode with the previous
//! listing; on any difference it reloads the whole directory. Polling,
//! rather than inotify, because it works wherever the directory lives:
//! Kubernetes ConfigMap volumes (updated by swapping a `..data` symlink,
//! which inotify watches on the files miss), bind mounts and overlay or
//! network filesystems that deliver no events, and inside network or mount
//! namespaces of test harnesses; it needs no extra dependency, and a few
//! `stat` calls a second cost nothing. A change lands at most one interval
//! late. Writers should replace files by rename (atomic); a half-written
//! file is at worst rejected once and picked up at the next poll.
//!
//! A reload parses again only the files whose text changed
//! ([`ParsedFiles`]); the state is still rebuilt from every document.
//!
//! A load with any problem is rejected whole: the problems are logged (one
//! error line each) and exposed in [`DirectoryWatch::last_error`], and the
//! previous state stays published. A valid load is published only when it
//! differs from the current state. [`DirectoryWatch::reloads`] counts the
//! reloads finished, published or rejected.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use super::{
    documents::yaml_files,
    load_directory_with,
    published::{publish_if_changed, SourceWatch},
    LoadError, ParsedFiles, RawResource, Snapshot, SourceConfig,
};
use crate::model::MeshState;

/// How often the directory is polled unless configured otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The directory source's handle: the shared [`SourceWatch`].
pub type DirectoryWatch = SourceWatch;

/// Loads `dir` (an error here — missing directory, invalid content — is a
/// startup error: there is no previous state to keep serving) and then
/// polls it every `interval`.
pub async fn watch_directory(
    dir: impl Into<PathBuf>,
    config: SourceConfig,
    interval: Duration,
) -> Result<DirectoryWatch, LoadError> {
    let dir: PathBuf = dir.into();
    let (fingerprint, result) = {
        let (dir, config) = (dir.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let fingerprint = fingerprint(&dir);
            let mut parsed = ParsedFiles::default();
            let result = load_directory_with(&dir, &config, &mut parsed);
            (fingerprint, result.map(|snapshot| (snapshot, parsed)))
        })
        .await
        .expect("directory load panicked")
    };
    let (snapshot, parsed) = result?;
    log_loaded(&dir, &snapshot, true);
    let (state_tx, state) = watch::channel(Arc::new(snapshot.state));
    let (raw_tx, raw) = watch::channel(Arc::new(snapshot.raw));
    let (error_tx, last_error) = watch::channel(None);
    let (reloads_tx, reloads) = watch::channel(0);
    let outputs = Outputs {
        state: state_tx,
        raw: raw_tx,
        error: error_tx,
        reloads: reloads_tx,
    };
    let task = tokio::spawn(poll(dir, config, interval, fingerprint, parsed, outputs));
    let mut watch = SourceWatch::new(state, raw, last_error, vec![task]);
    watch.reloads = reloads;
    Ok(watch)
}

/// Where the poll publishes.
struct Outputs {
    state: watch::Sender<Arc<MeshState>>,
    raw: watch::Sender<Arc<Vec<RawResource>>>,
    error: watch::Sender<Option<String>>,
    /// Reloads finished, published or rejected.
    reloads: watch::Sender<u64>,
}

impl Outputs {
    fn all_closed(&self) -> bool {
        self.state.is_closed()
            && self.raw.is_closed()
            && self.error.is_closed()
            && self.reloads.is_closed()
    }
}

async fn poll(
    dir: PathBuf,
    config: SourceConfig,
    interval: Duration,
    mut last: Fingerprint,
    mut parsed: ParsedFiles,
    outputs: Outputs,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if outputs.all_closed() {
            return;
        }
        let (dir_, config_, last_) = (dir.clone(), config.clone(), last.clone());
        let mut cache = std::mem::take(&mut parsed);
        let outcome = tokio::task::spawn_blocking(move || {
            let now = fingerprint(&dir_);
            let loaded = (now != last_).then(|| {
                let result = load_directory_with(&dir_, &config_, &mut cache);
                (now, result)
            });
            (cache, loaded)
        })
        .await;
        // A load that panicked loses the cache: the next one parses all.
        let Ok((cache, loaded)) = outcome else {
            continue;
        };
        parsed = cache;
        let Some((now, result)) = loaded else {
            continue;
        };
        // Remembered even when the load fails: a broken directory is
        // reported once, not every interval, and retried on the next change.
        last = now;
        match result {
            Ok(snapshot) => {
                log_loaded(&dir, &snapshot, false);
                let state = snapshot.state;
                let changed = publish_if_changed(&outputs.state, state);
                publish_if_changed(&outputs.raw, snapshot.raw);
                outputs
                    .error
                    .send_if_modified(|error| error.take().is_some());
                if changed {
                    tracing::info!(directory = %dir.display(), "configuration change published");
                } else {
                    tracing::debug!(directory = %dir.display(), "configuration reloaded, mesh state unchanged");
                }
            }
            Err(error) => {
                for problem in error.problems() {
                    tracing::error!(directory = %dir.display(), "{problem}");
                }
                tracing::error!(
                    directory = %dir.display(),
                    "configuration rejected; the previous state stays in force"
                );
                let text = error.to_string();
                outputs.error.send_if_modified(|current| {
                    let differs = current.as_deref() != Some(text.as_str());
                    *current = Some(text);
                    differs
                });
            }
        }
        outputs.reloads.send_modify(|n| *n += 1);
    }
}

fn log_loaded(dir: &Path, snapshot: &Snapshot, initial: bool) {
    for warning in &snapshot.warnings {
        tracing::warn!(directory = %dir.display(), "{warning}");
    }
    let state = &snapshot.state;
    tracing::info!(
        directory = %dir.display(),
        initial,
        workloads = state.workloads.len(),
        mesh_workloads = state.workloads.values().filter(|w| w.mesh).count(),
        services = state.services.len(),
        nodes = state.nodes.len(),
        peer_authentications = state.peer_authentications.len(),
        raw_resources = snapshot.raw.len(),
        "configuration loaded"
    );
}

/// What a poll compares: per YAML file, its name, size, mtime, ctime and
/// inode (a rename-replaced file has a new inode even when size and times
/// happen to match); or the listing error.
type Fingerprint = Result<Vec<(String, u64, Option<SystemTime>, i64, u64)>, String>;

fn fingerprint(dir: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt as _;
    let files = yaml_files(dir).map_err(|e| e.to_string())?;
    Ok(files
        .into_iter()
        .map(|(name, path)| match std::fs::metadata(&path) {
            Ok(meta) => (
                name,
                meta.len(),
                meta.modified().ok(),
                meta.ctime_nsec() + meta.ctime() * 1_000_000_000,
                meta.ino(),
            ),
            Err(_) => (name, 0, None, 0, 0),
        })
        .collect())
}
