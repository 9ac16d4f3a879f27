//! One-shot subcommands. They act on the pinned maps directly, so they work
//! whether or not the daemon is running (as long as it ran once).
use crate::{
    capture::{enroll::Enroller, loader, maps, pins::PinLayout},
    config::{AgentConfig, EnrollArgs, PinConfig, PodArgs},
};

/// `mesh-agent install`: prints the program states as one JSON line.
pub fn install(cfg: &AgentConfig) -> anyhow::Result<()> {
    let (cgroup_root, capture) = crate::app::capture_settings(cfg)?;
    let layout = PinLayout::new(&cfg.pins);
    let programs = loader::install(
        &layout,
        &cfg.pins.bpffs,
        &cgroup_root,
        capture,
        cfg.dns_proxy_port(),
    )?;
    println!("{}", serde_json::to_string(&programs)?);
    Ok(())
}

pub fn enroll(pins: &PinConfig, args: &EnrollArgs) -> anyhow::Result<()> {
    let layout = PinLayout::new(pins);
    let path = args.pod.netns_path();
    let cookie = Enroller::open(&layout)?.enroll(&path, &args.exclude_ports)?;
    println!(
        "enrolled {} (netns cookie {cookie}){}",
        path.display(),
        if args.exclude_ports.is_empty() {
            String::new()
        } else {
            format!(", excluded ports {:?}", args.exclude_ports)
        }
    );
    Ok(())
}

pub fn unenroll(pins: &PinConfig, args: &PodArgs) -> anyhow::Result<()> {
    let layout = PinLayout::new(pins);
    let path = args.netns_path();
    let (cookie, was) = Enroller::open(&layout)?.unenroll(&path)?;
    if was {
        println!("unenrolled {} (netns cookie {cookie})", path.display());
    } else {
        println!(
            "{} (netns cookie {cookie}) was not enrolled",
            path.display()
        );
    }
    Ok(())
}

pub fn status(pins: &PinConfig) -> anyhow::Result<()> {
    let layout = PinLayout::new(pins);
    let enroller = Enroller::open(&layout)?;
    println!("pins: {}", layout.root.display());
    for name in crate::capture::pins::PROGRAMS {
        let attached = layout.link(name).exists();
        println!(
            "  program {name:<16} {}",
            if attached { "attached" } else { "NOT attached" }
        );
    }
    let config = maps::config(&layout)?.get(&0, 0)?;
    println!(
        "captured connections go to {}:{} (IPv6 agent: {}), agent socket mark {:#x}",
        std::net::Ipv4Addr::from(config.agent_v4),
        config.agent_port,
        if config.has_v6 != 0 {
            std::net::Ipv6Addr::from(config.agent_v6).to_string()
        } else {
            "none".into()
        },
        config.agent_mark
    );
    println!("enrolled pods (by netns cookie):");
    for pod in enroller.list() {
        println!(
            "  {:<20} excluded ports {:?}",
            pod.netns_cookie, pod.excluded_ports
        );
    }
    let strict = crate::capture::strict::StrictPods::open(&layout)?.list();
    println!("pods under STRICT mTLS (plaintext dropped in the kernel): {strict:?}");
    let probes = crate::capture::probes::ProbePorts::open(&layout)?.list();
    println!("their ports the kubelet probes (plaintext from the node address passes): {probes:?}");
    println!("kernel counters:");
    for (name, value) in maps::read_stats(&maps::stats(&layout)?)? {
        println!("  {name:<24} {value}");
    }
    Ok(())
}

pub fn uninstall(pins: &PinConfig) -> anyhow::Result<()> {
    let layout = PinLayout::new(pins);
    layout.remove_all()?;
    println!(
        "removed {} (programs detached, maps released)",
        layout.root.display()
    );
    Ok(())
}
