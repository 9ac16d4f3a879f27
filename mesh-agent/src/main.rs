//! `mesh-agent`: the node agent of the eBPF-assisted mesh. `main` only parses
//! the configuration and dispatches; see `app.rs` for the daemon and
//! `commands.rs` for the one-shot subcommands.
#![deny(unsafe_code)]

mod access_log;
mod admin;
mod app;
mod capture;
mod cni;
mod commands;
mod config;
mod dns;
mod inbound;
mod logging;
mod mesh;
mod metrics;
mod outbound;
mod policy;
mod route;
mod shutdown;
mod state;

use config::{Cli, Command, FileConfig};

fn main() -> std::process::ExitCode {
    let cli: Cli = mesh_admin::flags::parse(config::RENAMED_ENV);
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mesh-agent: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.common.config.as_deref())?;
    let common = cli.common.merged(&file);
    let Command::Run(run) = &cli.command else {
        logging::init(
            &logging::initial_filter(&common.log, false),
            common.log_format,
        )?;
        return one_shot(cli, &common.pins(), &file);
    };
    let cfg = config::AgentConfig::resolve(&cli.common, run, &file)?;
    let log = logging::init(
        &logging::initial_filter(&cfg.log, cfg.access_log),
        cfg.log_format,
    )?;
    // One worker: a current-thread runtime, no cross-thread wake-ups.
    let mut builder = if cfg.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cfg.worker_threads);
        b
    };
    builder
        .enable_all()
        .build()?
        .block_on(app::run(cfg, std::sync::Arc::new(log)))
}

/// The subcommands that do their job and exit.
fn one_shot(cli: Cli, pins: &config::PinConfig, file: &FileConfig) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(_) => unreachable!("run is handled by real_main"),
        Command::Install(run) => {
            let cfg = config::AgentConfig::resolve(&cli.common, &run, file)?;
            commands::install(&cfg)
        }
        Command::Enroll(args) => commands::enroll(pins, &args),
        Command::Unenroll(args) => commands::unenroll(pins, &args),
        Command::Status => commands::status(pins),
        Command::Uninstall => commands::uninstall(pins),
    }
}
