//! The options of `cargo xtask demo` and `cargo xtask bench`: parsed (and
//! `--help` answered) by xtask before set-up and the release build, then
//! handed to `mesh-lab` as the same flags ([`ToFlags`]).
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// A directory of Istio YAML applied over the demo's defaults
    /// (xtask/lab/demo/bookinfo/): a resource replaces the default of the
    /// same kind, namespace and name; the demo lists what it replaced.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The L4 demo instead: AuthorizationPolicy enforced by the agents
    /// and in the kernel, no waypoint.
    #[arg(long)]
    pub l4: bool,
}

/// `cargo xtask soak` options.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Seconds between planned restarts (node1's agent and the waypoint in
    /// turn).
    #[arg(long, default_value_t = 60)]
    pub restart_every: u64,
}

/// Which benchmark, with its options.
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum BenchArgs {
    /// Plaintext L4 path through the node agent vs direct, cross-node
    /// HBONE vs direct, and the cost of metrics and a 100-rule policy.
    L4 {
        /// Bytes per throughput run.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// Throughput runs per path (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: u32,
        /// Round trips per latency run.
        #[arg(long, default_value_t = 20_000)]
        rounds: u32,
        /// A ztunnel binary you built (Istio's; never fetched or built by
        /// the project): measured on the same pods, load tool and run,
        /// two instances with HBONE mTLS between them.
        #[arg(long)]
        ztunnel: Option<PathBuf>,
        /// Offered load of the open-loop run (requests per second) at which
        /// vCPU and RSS per 1 k req/s are measured.
        #[arg(long, default_value_t = 5_000)]
        rate: u32,
    },
    /// HTTP through mesh-waypoint vs a stock Envoy vs direct, one proxy core each.
    L7(L7Args),
    /// Configuration at scale: workloads, services and policies pushed
    /// through the control plane to several agents and a waypoint.
    Scale(ScaleArgs),
}

/// `bench scale` options.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ScaleArgs {
    /// Workloads (pods) in the pushed configuration.
    #[arg(long, default_value_t = 10_000)]
    pub workloads: usize,
    /// Services in the pushed configuration.
    #[arg(long, default_value_t = 1_000)]
    pub services: usize,
    /// Agents subscribed at once (each a separate process).
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Single-resource changes timed from write to applied everywhere.
    #[arg(long, default_value_t = 50)]
    pub changes: usize,
}

/// `bench l7` options.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct L7Args {
    /// Seconds per load run (per run and protocol: closed loop, open loop
    /// at --load, open loop at --rate, for each proxy).
    #[arg(long, default_value_t = 7.0)]
    pub duration: f64,
    /// Open-loop offered load as a fraction of Envoy's closed-loop maximum.
    #[arg(long, default_value_t = 0.7)]
    pub load: f64,
    /// HTTP/1.1 keep-alive connections.
    #[arg(long, default_value_t = 16)]
    pub h1_connections: usize,
    /// h2c connections; the streams in flight are `--h2-streams`.
    #[arg(long, default_value_t = 2)]
    pub h2_connections: usize,
    #[arg(long, default_value_t = 32)]
    pub h2_streams: usize,
    /// Repeats of each measurement; the spread between them is printed.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Fixed open-loop offered load (requests per second) at which vCPU
    /// and RSS per 1 k req/s are measured for every proxy.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u32,
}

/// Options as command-line flags, for the `mesh-lab` command line.
pub trait ToFlags {
    fn to_flags(&self) -> Vec<String>;
}

fn flag(name: &str, value: impl ToString) -> [String; 2] {
    [format!("--{name}"), value.to_string()]
}

impl ToFlags for DemoArgs {
    fn to_flags(&self) -> Vec<String> {
        let mut flags = vec![];
        if let Some(d) = self.duration {
            flags.extend(flag("duration", d));
        }
        if let Some(dir) = &self.config {
            flags.extend(flag("config", dir.display()));
        }
        if self.l4 {
            flags.push("--l4".into());
        }
        flags
    }
}

impl ToFlags for SoakArgs {
    fn to_flags(&self) -> Vec<String> {
        [
            flag("minutes", self.minutes),
            flag("restart-every", self.restart_every),
        ]
        .concat()
    }
}

impl ToFlags for BenchArgs {
    fn to_flags(&self) -> Vec<String> {
        match self {
            BenchArgs::L4 {
                bytes,
                repeats,
                rounds,
                ztunnel,
                rate,
            } => [
                vec!["l4".to_string()],
                flag("bytes", bytes).to_vec(),
                flag("repeats", repeats).to_vec(),
                flag("rounds", rounds).to_vec(),
                flag("rate", rate).to_vec(),
                ztunnel
                    .iter()
                    .flat_map(|z| flag("ztunnel", z.display()))
                    .collect(),
            ]
            .concat(),
            BenchArgs::Scale(o) => [
                vec!["scale".to_string()],
                flag("workloads", o.workloads).to_vec(),
                flag("services", o.services).to_vec(),
                flag("agents", o.agents).to_vec(),
                flag("changes", o.changes).to_vec(),
            ]
            .concat(),
            BenchArgs::L7(o) => [
                vec!["l7".to_string()],
                flag("duration", o.duration).to_vec(),
                flag("load", o.load).to_vec(),
                flag("h1-connections", o.h1_connections).to_vec(),
                flag("h2-connections", o.h2_connections).to_vec(),
                flag("h2-streams", o.h2_streams).to_vec(),
                flag("runs", o.runs).to_vec(),
                flag("rate", o.rate).to_vec(),
            ]
            .concat(),
        }
    }
}
