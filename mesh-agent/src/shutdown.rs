//! Stopping the agent gracefully, for `POST /quitquitquit` and SIGTERM or
//! SIGINT alike, with the drain every daemon shares (`mesh_admin::drain`):
//! stop accepting on the data-path listeners, report not ready, let open
//! connections finish for up to `--drain-timeout`, exit 0. The admin and
//! metrics endpoints keep answering until the process exits, so a drain
//! can be watched (`/stats/connections`) and scraped.
use std::time::Duration;

pub use mesh_admin::drain::{Drain as Shutdown, Reason};
use tokio::task::JoinHandle;

use crate::state::connections::ConnectionStats;

/// Stops the accept loops (the listeners close when their task is gone;
/// connections they spawned run on) and waits up to `timeout` for open
/// connections to finish. Returns how many were still open.
pub async fn stop_and_drain(
    accepting: Vec<JoinHandle<()>>,
    stats: &ConnectionStats,
    timeout: Duration,
) -> u64 {
    for task in &accepting {
        task.abort();
    }
    for task in accepting {
        let _ = task.await;
    }
    mesh_admin::drain::settle(timeout, || stats.totals().active).await
}
