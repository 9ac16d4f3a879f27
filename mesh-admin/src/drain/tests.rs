//! The drain switch, readiness and the deadline.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use super::*;

#[tokio::test]
async fn the_first_reason_wins_and_readiness_goes_for_good() {
    let drain = Drain::default();
    assert!(!drain.is_ready());
    drain.set_ready();
    assert!(drain.is_ready() && !drain.is_triggered());
    let mut watch = drain.subscribe();
    assert!(!*watch.borrow());
    drain.trigger(Reason::Sigterm);
    drain.trigger(Reason::Quit);
    assert!(drain.is_triggered() && !drain.is_ready());
    drained(&mut watch).await;
    assert_eq!(drain.triggered().await, Reason::Sigterm);
    drain.set_ready();
    assert!(!drain.is_ready(), "ready again after a drain");
    assert!(!*drain.readiness().borrow());
}

#[tokio::test]
async fn watchers_wake_when_the_drain_starts() {
    let drain = Arc::new(Drain::default());
    let waiting = tokio::spawn({
        let mut watch = drain.subscribe();
        async move { drained(&mut watch).await }
    });
    let reason = tokio::spawn({
        let drain = Arc::clone(&drain);
        async move { drain.triggered().await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    drain.trigger(Reason::Quit);
    waiting.await.unwrap();
    assert_eq!(reason.await.unwrap(), Reason::Quit);
}

#[tokio::test(start_paused = true)]
async fn settle_waits_for_open_connections_up_to_the_deadline() {
    let drain = Drain::new(Duration::from_secs(2));
    let open = Arc::new(AtomicU64::new(3));
    let closer = tokio::spawn({
        let open = Arc::clone(&open);
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            open.store(0, Ordering::Relaxed);
        }
    });
    let start = tokio::time::Instant::now();
    assert_eq!(drain.settle(|| open.load(Ordering::Relaxed)).await, 0);
    assert!(start.elapsed() < Duration::from_secs(1));
    closer.await.unwrap();
    open.store(1, Ordering::Relaxed);
    let start = tokio::time::Instant::now();
    assert_eq!(drain.settle(|| open.load(Ordering::Relaxed)).await, 1);
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn finish_is_cut_short_at_the_deadline() {
    let drain = Drain::new(Duration::from_secs(1));
    assert_eq!(drain.finish(async { 7 }).await, Some(7));
    let never = std::future::pending::<()>();
    assert_eq!(drain.finish(never).await, None);
    assert_eq!(drain.timeout(), Duration::from_secs(1));
}

#[test]
fn reasons_read_as_their_signal() {
    assert_eq!(Reason::Sigterm.to_string(), "SIGTERM");
    assert_eq!(Reason::Sigint.to_string(), "SIGINT");
    assert_eq!(Reason::Quit.to_string(), "quitquitquit");
}
