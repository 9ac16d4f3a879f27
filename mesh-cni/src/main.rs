//! `mesh-cni`: run by the container runtime as a CNI plugin (`CNI_COMMAND`
//! set), or by the DaemonSet as `mesh-cni install|uninstall`. `main` only
//! reads the process environment and stdin and dispatches.
use std::{io::Read as _, path::PathBuf};

use clap::{Parser, Subcommand};

/// Chained CNI plugin of the mesh (CNI spec 1.0).
///
/// Run by the container runtime with CNI_COMMAND=ADD|DEL|CHECK|VERSION and
/// the network configuration on stdin: on ADD of a pod it asks the node
/// agent (Unix socket `agentSocket`, default /var/run/mesh/cni.sock) to
/// enrol the pod's network namespace in capture before the pod's containers
/// start, and fails the ADD (code 11, try again later) while the agent
/// cannot answer, so no pod starts uncaptured. Logs go to `logFile` or
/// stderr; stdout is the CNI protocol.
///
/// Without CNI_COMMAND it installs or uninstalls itself on a node.
#[derive(Debug, Parser)]
#[command(name = "mesh-cni", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy this binary into the CNI bin directory and append mesh-cni to
    /// the first *.conflist of the conf directory (idempotent).
    Install {
        #[arg(long, env = "MESH_CNI_BIN_DIR", default_value = "/host/opt/cni/bin")]
        cni_bin_dir: PathBuf,
        #[arg(long, env = "MESH_CNI_CONF_DIR", default_value = "/host/etc/cni/net.d")]
        cni_conf_dir: PathBuf,
        /// The agent's CNI socket as seen from the node.
        #[arg(long, env = "MESH_CNI_SOCKET", default_value = mesh_cni::api::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Namespaces whose pods never wait for the agent (written as the
        /// plugin's `excludeNamespaces`; repeat or comma-separate).
        /// [default: the plugin's own, kube-system and istio-system]
        #[arg(long, env = "MESH_CNI_EXCLUDE_NAMESPACES", value_delimiter = ',')]
        exclude_namespace: Vec<String>,
    },
    /// Remove mesh-cni from the first *.conflist and its binary (idempotent).
    Uninstall {
        #[arg(long, env = "MESH_CNI_BIN_DIR", default_value = "/host/opt/cni/bin")]
        cni_bin_dir: PathBuf,
        #[arg(long, env = "MESH_CNI_CONF_DIR", default_value = "/host/etc/cni/net.d")]
        cni_conf_dir: PathBuf,
    },
}

fn init_logging(file: Option<&std::path::Path>, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let opened = file.and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    // Never stdout: it carries the protocol.
    let _ = match opened {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

fn plugin() -> std::process::ExitCode {
    let env: std::collections::BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let conf: Option<serde_json::Value> = serde_json::from_slice(&stdin).ok();
    let log_file = conf
        .as_ref()
        .and_then(|c| c.get("logFile")?.as_str().map(PathBuf::from));
    let level = conf
        .as_ref()
        .and_then(|c| c.get("logLevel")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "info".into());
    init_logging(log_file.as_deref(), &level);
    tracing::debug!(command = ?env.get("CNI_COMMAND"), container = ?env.get("CNI_CONTAINERID"), "invoked");
    let outcome = mesh_cni::plugin::run(&env, &stdin);
    if let Some(json) = outcome.stdout {
        println!("{json}");
    }
    if outcome.success {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn main() -> std::process::ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        return plugin();
    }
    let cli = Cli::parse();
    init_logging(None, "info");
    let result = match cli.command {
        Command::Install {
            cni_bin_dir,
            cni_conf_dir,
            socket,
            exclude_namespace,
        } => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| {
                Ok(mesh_cni::install::install(
                    &exe,
                    &cni_bin_dir,
                    &cni_conf_dir,
                    &socket,
                    &exclude_namespace,
                )?)
            }),
        Command::Uninstall {
            cni_bin_dir,
            cni_conf_dir,
        } => mesh_cni::install::uninstall(&cni_bin_dir, &cni_conf_dir).map_err(Into::into),
    };
    match result {
        Ok(changed) => {
            tracing::info!(conflist = %changed.conflist.display(), modified = changed.modified, "done");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
