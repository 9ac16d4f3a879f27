//! `meshctl`: parse the command line, run it, print the result.
use std::io::Write as _;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = meshctl::cli::Cli::parse();
    match meshctl::run(cli) {
        Ok(text) => {
            // A closed pipe (`meshctl … | head`) is not an error.
            let _ = std::io::stdout().write_all(text.as_bytes());
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            if let Some(found) = error.downcast_ref::<meshctl::analyze::FoundErrors>() {
                let _ = std::io::stdout().write_all(found.0.as_bytes());
                return std::process::ExitCode::FAILURE;
            }
            eprintln!("meshctl: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
