//! `mesh-waypoint`: parse flags, set up logging, run the app.
use std::sync::Arc;

use clap::Parser;
use mesh_admin::log_control::LogControl;
use mesh_waypoint::app::{self, Args, WaypointConfig};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (reload, control) = LogControl::new(&args.log)?;
    tracing_subscriber::registry()
        .with(reload)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(app::run(
        WaypointConfig::from_args(&args),
        Some(Arc::new(control)),
    ))
}
