//! One `kube::runtime::watcher` per watched kind, over `DynamicObject`,
//! all namespaces, bookmarks on, with kube's default backoff. The watcher
//! itself does the hard part: it resumes from the last resourceVersion
//! (bookmarks keep that fresh) and, after `410 Gone` or a failed resume,
//! relists from scratch (an `Init` … `InitDone` sequence, which the store
//! swaps in whole). Here we only forward its events and log every restart.
use futures::StreamExt as _;
use kube::{
    api::{Api, DynamicObject},
    runtime::{watcher, WatchStreamExt as _},
    Client,
};
use tokio::sync::mpsc;

use super::resources::WatchedKind;

/// What a watcher task tells the source loop.
#[derive(Debug)]
pub enum Update {
    /// An event of kind number `kind` (index into the watched table).
    Event {
        kind: usize,
        event: Box<watcher::Event<DynamicObject>>,
    },
    /// The watch of kind number `kind` failed; it is retried with backoff.
    Error { kind: usize, message: String },
}

/// Spawns the watcher of kind number `index`; it runs until `tx` closes.
pub fn spawn(
    client: Client,
    index: usize,
    kind: WatchedKind,
    tx: mpsc::Sender<Update>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(client, &kind.resource);
        // Config::default(): ListWatch, bookmarks on, pages of 500.
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let name = kind.describe();
        let mut lists = 0u64;
        while let Some(item) = stream.next().await {
            let update = match item {
                Ok(event) => {
                    match &event {
                        watcher::Event::Init => {
                            lists += 1;
                            if lists == 1 {
                                tracing::debug!(kind = %name, "listing");
                            } else {
                                tracing::info!(kind = %name, relist = lists - 1, "watch restarted: relisting");
                            }
                        }
                        watcher::Event::InitDone => {
                            tracing::debug!(kind = %name, "list complete; watching");
                        }
                        _ => {}
                    }
                    Update::Event {
                        kind: index,
                        event: Box::new(event),
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        kind = %name,
                        "watch failed, retrying with backoff (relisting if the resourceVersion is gone): {error}"
                    );
                    Update::Error {
                        kind: index,
                        message: error.to_string(),
                    }
                }
            };
            if tx.send(update).await.is_err() {
                return;
            }
        }
    })
}
