//! `meshctl`: the operator CLI. [`run`] executes a parsed [`cli::Cli`]:
//!
//! - [`target`]: `host:port` or a network namespace to enter
//! - [`http`]: the tiny admin-endpoint client
//! - [`pod`]: istioctl's `<pod>[.<ns>]` targets, resolved through the
//!   control plane to the namespace holding the pod's or its node's address
//! - [`proxy_status`], [`proxy_config`], [`bpf`], [`describe`] (`x describe
//!   pod`): one module per subcommand
//! - [`dashboard`]: the control plane's service graph page, forwarded
//!   out of its network namespace when needed
//! - [`port_forward`]: a pod's ports on this host's loopback, as
//!   `kubectl port-forward`, through [`netns`] (sockets made inside a
//!   pod's network namespace)
//! - [`render`]: tables and `-o json|yaml`
#![forbid(unsafe_code)]

pub mod accept;
pub mod analyze;
pub mod bpf;
pub mod cli;
pub mod dashboard;
pub mod describe;
pub mod http;
pub mod netns;
pub mod pod;
pub mod port_forward;
pub mod proxy_config;
pub mod proxy_status;
pub mod render;
pub mod target;

use std::path::Path;

use anyhow::Context as _;

use cli::{Cli, Command};
use target::Target;

/// What to say when an admin endpoint does not answer.
pub(crate) fn unreachable_hint(what: &str, target: &Target, flag: &str) -> String {
    format!(
        "cannot reach the {what} admin at {}: is {} running? pass {flag}",
        target.describe(),
        match what {
            "control plane" => "mesh-control",
            "waypoint" => "mesh-waypoint",
            _ => "mesh-agent",
        },
    )
}

/// Fetches `path` from `target`, turning "nothing answered" into advice.
async fn fetch(
    target: &Target,
    path: &str,
    what: &str,
    flag: &str,
) -> anyhow::Result<serde_json::Value> {
    match http::get_json(target.admin_addr(), path).await {
        Ok(doc) => Ok(doc),
        Err(e) if e.is_unreachable() => {
            Err(anyhow::Error::new(e).context(unreachable_hint(what, target, flag)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The current time, for relative certificate expiries.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `proxy-status` against `target`: the text to print.
pub async fn proxy_status(target: &Target, output: render::Output) -> anyhow::Result<String> {
    let doc = fetch(
        target,
        "/debug/syncz",
        "control plane",
        "--control-plane (or MESHCTL_CONTROL_PLANE)",
    )
    .await?;
    proxy_status::render(&doc, output).context("the control plane's /debug/syncz")
}

/// `log`: applies each change with `POST /logging?<change>`, then shows
/// the filter in force.
async fn log_levels(target: &Target, changes: &[String]) -> anyhow::Result<String> {
    let addr = target.admin_addr();
    for change in changes {
        http::request(addr, hyper::Method::POST, &format!("/logging?{change}"))
            .await
            .map_err(|e| {
                let hint = if e.is_unreachable() {
                    unreachable_hint("admin endpoint", target, "TARGET")
                } else {
                    format!("the change {change:?} was refused")
                };
                anyhow::Error::new(e).context(hint)
            })?;
    }
    let filter = http::request(addr, hyper::Method::GET, "/logging")
        .await
        .map_err(|e| {
            anyhow::Error::new(e).context(format!("reading the filter from {}", target.describe()))
        })?;
    Ok(format!("{}\n", String::from_utf8_lossy(&filter).trim()))
}

/// Runs one command; the text to print on stdout.
pub fn run(cli: Cli) -> anyhow::Result<String> {
    let netns_dir = Path::new(target::NETNS_DIR);
    // The target is resolved and entered here, on the only thread, before
    // the runtime exists (setns moves only the calling thread).
    let (target, work): (Target, Work) = match cli.command {
        Command::Bpf {
            instance,
            bpffs,
            output,
        } => {
            let report = bpf::collect(&bpffs, &instance)?;
            return Ok(bpf::render(&report, output));
        }
        Command::Dashboard {
            port,
            address,
            browser,
            max_connections,
            idle_timeout,
        } => {
            let target = Target::parse(&cli.control_plane, netns_dir).context("--control-plane")?;
            let options = dashboard::Options {
                address,
                port,
                browser,
                limits: dashboard::proxy::Limits {
                    max_connections,
                    idle: std::time::Duration::from_secs(idle_timeout),
                    ..Default::default()
                },
            };
            return dashboard::run(&target, netns_dir, &options);
        }
        Command::PortForward {
            pod,
            ports,
            address,
            allow_non_loopback,
            max_connections,
            idle_timeout,
        } => {
            let options = port_forward::Options {
                pod,
                ports,
                addresses: address,
                allow_non_loopback,
                limits: port_forward::Limits {
                    max_connections,
                    idle: std::time::Duration::from_secs(idle_timeout),
                    ..Default::default()
                },
            };
            return port_forward::run(&options, netns_dir);
        }
        Command::Analyze {
            dir: Some(dir),
            output,
            ..
        } => {
            let report = mesh_control::analyze::analyze_dir(&dir)
                .with_context(|| format!("analyzing {}", dir.display()))?;
            return analyze::finish(&report, output);
        }
        Command::Analyze { output, .. } => (
            Target::parse(&cli.control_plane, netns_dir).context("--control-plane")?,
            Work::Analyze(output),
        ),
        Command::Log {
            target,
            level,
            modules,
        } => {
            let mut changes: Vec<String> =
                level.map(|l| format!("level={l}")).into_iter().collect();
            for m in modules {
                anyhow::ensure!(
                    m.contains('='),
                    "--module wants MODULE=LEVEL (e.g. mesh_agent::policy=debug), got {m:?}"
                );
                changes.push(m);
            }
            (
                Target::parse(&target, netns_dir).context("TARGET")?,
                Work::Log(changes),
            )
        }
        Command::Experimental {
            command:
                cli::Experimental::Describe {
                    what: cli::DescribeWhat::Pod { pod, output },
                },
        } => {
            let pod_ref = pod::PodRef::parse(&pod).with_context(|| {
                format!("{pod:?} is no pod name: write <pod> or <pod>.<namespace>")
            })?;
            let doc = control_dump(&cli.control_plane, netns_dir)?;
            let summary = describe::summarize(&doc, &pod_ref)?;
            return Ok(describe::render(&summary, output));
        }
        Command::ProxyStatus { output } => (
            Target::parse(&cli.control_plane, netns_dir).context("--control-plane")?,
            Work::Status(output),
        ),
        Command::ProxyConfig {
            kind,
            agent,
            namespace,
            workload,
            address,
            port,
            direction,
            fqdn,
            output,
        } => {
            let mut filters = proxy_config::Filters {
                namespace,
                workload,
                address,
                identity: None,
                port,
                direction,
                fqdn,
            };
            let target = resolve_agent(&agent, kind, &cli.control_plane, netns_dir, &mut filters)?;
            (target, Work::Config(kind, filters, output))
        }
    };
    target.enter(netns_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match work {
            Work::Status(output) => proxy_status(&target, output).await,
            Work::Log(changes) => log_levels(&target, &changes).await,
            Work::Analyze(output) => {
                let doc = fetch(
                    &target,
                    "/config_dump",
                    "control plane",
                    "--control-plane (or MESHCTL_CONTROL_PLANE)",
                )
                .await?;
                let resources = doc["resources"].as_array().cloned().unwrap_or_default();
                let report = mesh_control::analyze::analyze_values(resources);
                analyze::finish(&report, output)
            }
            Work::Config(kind, filters, output) => {
                let (what, flag) = if proxy_config::waypoint::is_waypoint_kind(kind) {
                    (
                        "waypoint",
                        "the waypoint's admin as host:port or its pod's netns name",
                    )
                } else {
                    ("agent", "the agent as host:port or its node's netns name")
                };
                let doc = fetch(&target, kind.path(), what, flag).await?;
                proxy_config::render(kind, &doc, &filters, output, now_unix())
                    .with_context(|| format!("the {what}'s {}", kind.path()))
            }
        }
    })
}

/// The control plane's `/config_dump`, read on a thread of its own (which
/// enters the control plane's namespace), so the caller's stays put.
fn control_dump(control_plane: &str, netns_dir: &Path) -> anyhow::Result<serde_json::Value> {
    let control = Target::parse(control_plane, netns_dir).context("--control-plane")?;
    let dir = netns_dir.to_path_buf();
    std::thread::spawn(move || {
        control.enter(&dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(fetch(
            &control,
            "/config_dump",
            "control plane",
            "--control-plane (or MESHCTL_CONTROL_PLANE)",
        ))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("reading the control plane's /config_dump panicked"))?
}

/// `proxy-config`'s AGENT: an address or a network namespace as given, or
/// a pod (`<pod>[.<ns>]`) the control plane knows, resolved to its own
/// namespace (waypoint kinds) or its node's, with `filters` narrowed to
/// the pod. A namespace of the same name is used when the control plane
/// knows no such pod or cannot be reached.
fn resolve_agent(
    agent: &str,
    kind: proxy_config::Kind,
    control_plane: &str,
    netns_dir: &Path,
    filters: &mut proxy_config::Filters,
) -> anyhow::Result<Target> {
    let direct = Target::parse(agent, netns_dir);
    if let Ok(Target::Addr(_)) = direct {
        return Ok(direct?);
    }
    let Some(pod_ref) = pod::PodRef::parse(agent) else {
        return direct.context("AGENT");
    };
    let found = control_dump(control_plane, netns_dir)
        .and_then(|doc| pod::find_pod(&doc, &pod_ref).map(|p| (doc, p)));
    let (doc, info) = match (found, direct) {
        (Ok(found), _) => found,
        (Err(_), Ok(netns)) => return Ok(netns),
        (Err(e), Err(_)) => {
            return Err(e.context(format!(
                "AGENT {agent:?} is neither host:port, a network namespace in {} nor a pod                  the control plane knows",
                netns_dir.display()
            )))
        }
    };
    let control_netns = match Target::parse(control_plane, netns_dir) {
        Ok(Target::Netns(name)) => Some(name),
        _ => None,
    };
    let netns = if proxy_config::waypoint::is_waypoint_kind(kind)
        || (kind == proxy_config::Kind::Certificate
            && proxy_config::secrets::serves_own_certificates(&doc, &info))
    {
        let ip = pod::pod_ip(&info)?;
        pod::netns_of(netns_dir, ip, &info.name, "pod", control_netns.as_deref())?
    } else {
        let ip = pod::node_address(&doc, &info.node)
            .with_context(|| format!("the node of pod {}.{}", info.name, info.namespace))?;
        use proxy_config::Kind;
        match kind {
            Kind::Certificate => {
                filters.identity.get_or_insert(info.identity.clone());
            }
            Kind::Connections => {
                if let Ok(ip) = pod::pod_ip(&info) {
                    filters.address.get_or_insert(ip.to_string());
                }
            }
            _ => {
                filters.workload.get_or_insert(info.name.clone());
                filters.namespace.get_or_insert(info.namespace.clone());
            }
        }
        pod::netns_of(netns_dir, ip, &info.node, "node", control_netns.as_deref())?
    };
    Ok(Target::Netns(netns))
}

enum Work {
    Status(render::Output),
    /// `level=…` / `module=level` changes; empty: just show the filter.
    Log(Vec<String>),
    Analyze(render::Output),
    Config(proxy_config::Kind, proxy_config::Filters, render::Output),
}
