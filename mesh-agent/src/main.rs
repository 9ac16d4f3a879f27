//! `mesh-agent`: the node agent of the eBPF-assisted mesh. `main` only parses
//! the configuration and dispatches; see `app.rs` for the daemon and
//! `commands.rs` for the one-shot subcommands.
#![deny(unsafe_code)]

mod admin;
mod app;
mod capture;
mod commands;
mod config;
mod inbound;
mod logging;
mod mesh;
mod outbound;
mod policy;
mod state;

use clap::Parser as _;
use config::{Cli, Command, FileConfig};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
    let (filter, format) = config::log_settings(&cli.common, &file);
    logging::init(&filter, format)?;
    let pins = config::pin_config(&cli.common, &file);
    match cli.command {
        Command::Run(run) => {
            let cfg = config::AgentConfig::resolve(&cli.common, &run, &file)?;
            // One worker: a current-thread runtime, no cross-thread wake-ups.
            let mut builder = if cfg.worker_threads == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(cfg.worker_threads);
                b
            };
            builder.enable_all().build()?.block_on(app::run(cfg))
        }
        Command::Install(run) => {
            let cfg = config::AgentConfig::resolve(&cli.common, &run, &file)?;
            commands::install(&cfg)
        }
        Command::Enroll(args) => commands::enroll(&pins, &args),
        Command::Unenroll(args) => commands::unenroll(&pins, &args),
        Command::Status => commands::status(&pins),
        Command::Uninstall => commands::uninstall(&pins),
    }
}
