//! Wiring of `mesh-agent run`: install capture, start the listeners (the
//! outbound capture listener, each enrolled pod's HBONE listener inside its
//! network namespace, the DNS proxy) and the admin, readiness and metrics
//! endpoints, then wait for SIGTERM, SIGINT
//! or `POST /quitquitquit` and drain (shutdown.rs). Capture stays installed
//! on exit (see loader.rs).
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context as _;
use mesh_common::CaptureConfig;

use crate::{
    admin::{self, AdminState, CaptureState},
    capture::{
        bpffs, ebpf_logs, enroll::Enroller, loader, maps, orig_dst::OrigDstTable, pins::PinLayout,
    },
    config::AgentConfig,
    dns::{
        server::{DnsServer, DnsState},
        upstream::Upstream,
    },
    inbound::pods::{PodListeners, MAX_CONNECTIONS_PER_POD},
    logging::LogControl,
    metrics::{dns::DnsMetrics, health::Health, Metrics, TcpMetrics},
    outbound::{
        listener::{Outbound, TunnelOrigins},
        proxy::ProxySettings,
    },
    shutdown::{self, Shutdown},
    state::{connections::ConnectionStats, inputs::ProxyInputs},
};

/// The first global (non-loopback, non-link-local) IPv4 address of this netns.
fn detect_ipv4() -> anyhow::Result<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()?
        .filter_map(|ifa| ifa.address?.as_sockaddr_in().map(|sin| sin.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_link_local())
        .context("no global IPv4 address found for the agent; pass --redirect-ipv4")
}

/// The cgroup to attach at and the configuration the programs read.
pub fn capture_settings(cfg: &AgentConfig) -> anyhow::Result<(PathBuf, CaptureConfig)> {
    let cgroup_root = match &cfg.cgroup_root {
        Some(path) => path.clone(),
        None => bpffs::cgroup2_mount()?,
    };
    let redirect_v4 = match cfg.redirect_ipv4 {
        Some(ip) => ip,
        None => detect_ipv4()?,
    };
    let capture = CaptureConfig {
        agent_v4: redirect_v4.octets(),
        agent_port: cfg.outbound_port,
        has_v6: u16::from(cfg.redirect_ipv6.is_some()),
        agent_v6: cfg.redirect_ipv6.map(|ip| ip.octets()).unwrap_or_default(),
        agent_mark: cfg.socket_mark,
        dns_port: 0, // set by the installer (`loader::install`)
        _pad: 0,
    };
    Ok((cgroup_root, capture))
}

/// Runs `mesh-agent install` as a child process with the resolved settings
/// and returns what it did.
fn install_in_child(
    cfg: &AgentConfig,
    cgroup_root: &std::path::Path,
    capture: &CaptureConfig,
) -> anyhow::Result<Vec<loader::ProgramState>> {
    let exe = std::env::current_exe().context("locating our own executable")?;
    // The child resolves the same settings; only what was detected here
    // is added, so both sides agree on it.
    let args = crate::config::RunArgs {
        cgroup_root: Some(cgroup_root.to_path_buf()),
        redirect_ipv4: Some(Ipv4Addr::from(capture.agent_v4)),
        ..cfg.args.clone()
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(cfg.common_args.to_args())
        .arg("install")
        .args(args.to_args());
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let out = cmd.output().context("running `mesh-agent install`")?;
    anyhow::ensure!(
        out.status.success(),
        "`mesh-agent install` failed ({})",
        out.status
    );
    serde_json::from_slice(&out.stdout).context("reading the result of `mesh-agent install`")
}

/// Starts the reconciler of the pods' own HBONE listeners (inbound/pods.rs)
/// and returns what the outbound proxy needs to open tunnels from the
/// source pod's namespace.
fn start_pod_listeners(
    cfg: &AgentConfig,
    layout: &PinLayout,
    mesh: &crate::state::runtime::MeshRuntime,
    stats: &Arc<ConnectionStats>,
    settings: &ProxySettings,
    shutdown: &Arc<Shutdown>,
    fast_path: Option<Arc<crate::capture::fast_path::FastPath>>,
) -> anyhow::Result<TunnelOrigins> {
    let sockets = crate::capture::netns_sockets::NetnsSockets::start()
        .context("starting the netns socket factory")?;
    let table = Arc::default();
    let inputs = Arc::new(ProxyInputs {
        settings: settings.clone(),
        stats: Arc::clone(stats),
        view: mesh.view.clone(),
        live: Arc::clone(&mesh.live),
        // Inbound connects to local pods only.
        hbone: None,
        resolver: None,
    });
    if fast_path.is_some() {
        let reporter = crate::outbound::kernel_carried::KernelCarried {
            events: crate::capture::kernel_events::KernelEvents::open(layout)?,
            inputs: Arc::clone(&inputs),
            pods: Arc::clone(&table),
            sockets: sockets.clone(),
        };
        tokio::spawn(reporter.run());
    }
    let listeners = PodListeners::new(
        sockets.clone(),
        Enroller::open(layout)?,
        Arc::clone(&table),
        Arc::clone(&mesh.store),
        inputs,
        mesh_hbone::ServerOptions {
            drain_timeout: cfg.drain_timeout,
            max_connections: MAX_CONNECTIONS_PER_POD,
            ..mesh_hbone::ServerOptions::default()
        },
        Arc::clone(shutdown),
    );
    tokio::spawn(listeners.run());
    Ok(TunnelOrigins {
        table,
        sockets,
        fast_path,
    })
}

pub async fn run(cfg: AgentConfig, log: Arc<LogControl>) -> anyhow::Result<()> {
    let layout = PinLayout::new(&cfg.pins);
    let (cgroup_root, capture) = capture_settings(&cfg)?;
    let redirect_v4 = Ipv4Addr::from(capture.agent_v4);
    tracing::info!(
        instance = %cfg.pins.instance,
        pins = %layout.root.display(),
        cgroup = %cgroup_root.display(),
        redirect = %SocketAddr::new(IpAddr::V4(redirect_v4), cfg.outbound_port),
        "installing capture"
    );
    let programs = install_in_child(&cfg, &cgroup_root, &capture)
        .context("installing the capture programs")?;
    if let Some(logger) = loader::logger(&programs) {
        tokio::spawn(ebpf_logs::forward(logger));
    }

    let shutdown = Arc::new(Shutdown::new(cfg.drain_timeout));
    shutdown.trigger_on_signals();
    let tcp_metrics = cfg.metrics.then(TcpMetrics::default);
    let stats = Arc::new(ConnectionStats::new(tcp_metrics.clone()));
    let orig_dst = Arc::new(OrigDstTable::new(maps::orig_dst_by_tuple(&layout)?));
    let settings = ProxySettings {
        socket_mark: cfg.socket_mark,
        buffer_size: cfg.buffer_size,
        connect_timeout: cfg.connect_timeout,
    };
    // The same-node fast path needs the mesh's view (its decisions) and
    // the pods' namespaces (to abort a connection): only with a control plane.
    // Opening empties the pinned map: pairs a previous agent cached must
    // not outlive it, whether or not this one uses the fast path.
    let fast_path =
        crate::capture::fast_path::FastPath::open(&layout).context("opening the fast-path map")?;
    let fast_path = (cfg.mesh.is_some() && cfg.fast_path).then(|| Arc::new(fast_path));
    let mesh = match &cfg.mesh {
        Some(mesh_cfg) => Some(
            crate::mesh::start(
                mesh_cfg,
                &cfg,
                &layout,
                redirect_v4,
                Arc::clone(&stats),
                Arc::clone(&shutdown),
                fast_path.clone(),
            )
            .await
            .context("starting the mesh side (xDS, certificates, HBONE)")?,
        ),
        None => None,
    };
    if let (Some(cni), Some(mesh)) = (&cfg.cni, &mesh) {
        crate::cni::start(cni.clone(), &layout, mesh.view.clone())
            .await
            .context("starting the CNI server")?;
    }
    let resolver = match cfg.dns_upstream {
        Some(upstream) => Some(
            crate::dns::resolve::Resolver::new(upstream)
                .with_context(|| format!("building the resolver for DNS upstream {upstream}"))?,
        ),
        None => {
            tracing::warn!("no DNS upstream (--dns-upstream, /etc/resolv.conf): service entry endpoints known by name will not resolve");
            None
        }
    };
    // Pods' own HBONE listeners, and the namespaces tunnels leave from.
    let origins = match &mesh {
        Some(mesh) => Some(start_pod_listeners(
            &cfg,
            &layout,
            mesh,
            &stats,
            &settings,
            &shutdown,
            fast_path.clone(),
        )?),
        None => None,
    };
    let mut outbound = vec![];
    let v4_addr = SocketAddr::new(IpAddr::V4(redirect_v4), cfg.outbound_port);
    let v6_addr = cfg
        .redirect_ipv6
        .map(|v6| SocketAddr::new(IpAddr::V6(v6), cfg.outbound_port));
    for addr in std::iter::once(v4_addr).chain(v6_addr) {
        let listener = Outbound::bind(
            addr,
            Arc::clone(&orig_dst),
            Arc::clone(&stats),
            settings.clone(),
            mesh.clone(),
            resolver.clone(),
        )
        .await
        .with_context(|| format!("binding the outbound listener on {addr}"))?;
        outbound.push(match &origins {
            Some(origins) => listener.with_origins(origins.clone()),
            None => listener,
        });
    }
    let dns_metrics = DnsMetrics::default();
    let mut dns = vec![];
    match (&mesh, cfg.dns_proxy) {
        (Some(mesh), true) => {
            let v4 = std::iter::once(IpAddr::V4(redirect_v4));
            for ip in v4.chain(cfg.redirect_ipv6.map(IpAddr::V6)) {
                let addr = SocketAddr::new(ip, mesh_common::DNS_PROXY_PORT);
                let upstream = cfg.dns_upstream.map(|addr| Upstream {
                    addr,
                    timeout: crate::dns::server::UPSTREAM_TIMEOUT,
                    mark: cfg.socket_mark,
                });
                let state = DnsState::new(mesh.view.clone(), upstream, dns_metrics.clone());
                dns.push(
                    DnsServer::bind(addr, state)
                        .await
                        .with_context(|| format!("binding the DNS proxy on {addr}"))?,
                );
            }
        }
        (None, true) => tracing::info!(
            "DNS proxy off: it answers from the control plane's view, and none is configured"
        ),
        (_, false) => {}
    }
    let admin_state = Arc::new(AdminState {
        stats: Arc::clone(&stats),
        mesh: mesh.clone(),
        capture: Some(CaptureState {
            programs,
            enroller: std::sync::Mutex::new(Enroller::open(&layout)?),
            kernel_stats: maps::stats(&layout)?,
            strict: std::sync::Mutex::new(crate::capture::strict::StrictPods::open(&layout)?),
            probes: std::sync::Mutex::new(crate::capture::probes::ProbePorts::open(&layout)?),
        }),
        log: Some(log),
        shutdown: Arc::clone(&shutdown),
    });
    admin::serve(cfg.admin_addr, admin_state)
        .await
        .with_context(|| format!("binding the admin endpoint on {}", cfg.admin_addr))?;
    let ready = admin::serve_ready(cfg.ready_addr, Arc::clone(&shutdown))
        .await
        .with_context(|| format!("binding the readiness endpoint on {}", cfg.ready_addr))?;
    match tcp_metrics {
        Some(tcp) => {
            let health = Health {
                stats: Arc::clone(&stats),
                mesh: mesh.clone(),
                layout: Some(layout.clone()),
                kernel_stats: Some(maps::stats(&layout)?),
            };
            let metrics = Arc::new(Metrics::new(tcp, Some(health)).with_dns(&dns_metrics));
            admin::serve_metrics(cfg.metrics_addr, metrics)
                .await
                .with_context(|| format!("binding the metrics endpoint on {}", cfg.metrics_addr))?;
        }
        None => tracing::info!("metrics disabled (--metrics=false)"),
    }
    let mut accepting: Vec<_> = outbound
        .into_iter()
        .map(|o| tokio::spawn(o.serve()))
        .collect();
    accepting.extend(dns.into_iter().map(|dns| tokio::spawn(dns.serve())));
    accepting.push(ready);
    shutdown.set_ready();
    tracing::info!("agent ready");

    let reason = shutdown.triggered().await;
    let before = stats.totals().active;
    tracing::info!(
        ?reason,
        active = before,
        timeout = ?cfg.drain_timeout,
        "stopping: listeners closed, draining open connections"
    );
    let left = shutdown::stop_and_drain(accepting, &stats, cfg.drain_timeout).await;
    let totals = stats.totals();
    tracing::info!(
        accepted = totals.accepted,
        cut_short = left,
        "stopped; capture stays installed (run `mesh-agent uninstall` to remove it)"
    );
    Ok(())
}
