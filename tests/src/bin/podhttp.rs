//! `podhttp`: the HTTP app that runs inside a test pod (see
//! `mesh_e2e::httpd`). Like `podctl` it first joins the pod's cgroup v2 leaf
//! and network namespace, before the async runtime starts any thread, so
//! every worker thread and socket belongs to the pod.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mesh_e2e::httpd;

/// HTTP test app for pod network namespaces. `--netns`/`--cgroup` are
/// accepted before or after `serve`.
#[derive(Parser)]
struct Cli {
    /// Network namespace to enter before anything else (a /run/netns path).
    #[arg(long, global = true)]
    netns: Option<PathBuf>,
    /// cgroup v2 directory to join before creating any socket.
    #[arg(long, global = true)]
    cgroup: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serves HTTP/1.1 and h2c on one port. Prints `{"ready":true,"port":…}`
    /// once listening, then `{"request":path,"status":…}` per request.
    Serve(httpd::Config),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(cgroup) = &cli.cgroup {
        std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())?;
    }
    if let Some(netns) = &cli.netns {
        let file = std::fs::File::open(netns)?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    }
    let Cmd::Serve(config) = cli.cmd;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(httpd::serve(config))
}
