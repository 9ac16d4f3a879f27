//! `mesh-control`: the control plane binary. `main` parses the
//! configuration, sets up logging and runs [`mesh_control::app`].
use clap::Parser as _;
use mesh_control::app::{self, ControlConfig};

fn main() -> std::process::ExitCode {
    let config = ControlConfig::parse();
    let log = match app::logging::init(&config.log, config.log_format) {
        Ok(log) => log,
        Err(error) => {
            eprintln!("mesh-control: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads.max(1));
    }
    let result = runtime
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(app::run(config, Some(log))));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mesh-control: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
