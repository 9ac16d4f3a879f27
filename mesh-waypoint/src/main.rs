//! `mesh-waypoint`: parse flags, set up logging, run the app.
use std::sync::Arc;

use mesh_admin::log_control::{LogControl, LogFormat};
use mesh_waypoint::app::{self, Args, WaypointConfig};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

fn main() -> anyhow::Result<()> {
    let args = Args::parse_env();
    let (reload, control) = LogControl::new(&args.log)?;
    let registry = tracing_subscriber::registry().with(reload);
    match args.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(app::run(
        WaypointConfig::from_args(&args),
        Some(Arc::new(control)),
    ))
}
