//! Stopping through the drain: what SIGTERM and SIGINT do.
use std::time::Duration;

use super::*;

#[tokio::test]
async fn a_triggered_drain_stops_the_app_cleanly_and_clears_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, ca_dir) = (dir.path().join("config"), dir.path().join("ca"));
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = ControlConfig {
        drain_timeout: Duration::from_secs(3),
        ..ControlConfig::for_dirs(&config_dir, &ca_dir)
    };
    let app = App::build(config).await.unwrap();
    let drain = Arc::clone(&app.drain);
    assert_eq!(drain.timeout(), Duration::from_secs(3));
    let ready = drain.readiness();
    let task = tokio::spawn(app.run(std::future::pending()));
    tokio::time::timeout(Duration::from_secs(10), ready.clone().wait_for(|r| *r))
        .await
        .expect("ready")
        .unwrap();
    drain.trigger(Reason::Sigterm);
    // The gRPC servers end because of the drain: that is a stop, not a
    // server failure.
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped within the drain")
        .unwrap()
        .unwrap();
    assert!(!*ready.borrow());
    assert_eq!(drain.triggered().await, Reason::Sigterm);
}
