//! `cargo xtask bench l4`, cross-node part: the same podctl workloads
//! sent directly, through this mesh (HBONE mTLS between the two nodes'
//! agents) and, with `--ztunnel PATH`, through Istio's ztunnel (two
//! instances, HBONE mTLS between them), interleaved within each repeat.
//!
//! Pods: node1 `direct` (not enrolled), `meshed` (enrolled), `zclient`
//! (not enrolled; its ztunnel runs in its namespace); node2 `server`
//! (enrolled) and `zserver` (not enrolled; its ztunnel). Both ztunnels run
//! in dedicated mode with 2 workers (our agent's default), fed by the same
//! mesh-control as the agents. Without iptables, `zclient`'s load tool
//! reaches its ztunnel over SOCKS5: one more loopback round trip, at
//! connection set-up only.
//!
//! Workloads per path and repeat: one `--bytes` upload (throughput),
//! `--rounds` 1-byte round trips on one connection (p50/p99), 300 new
//! connections with one round trip each (set-up p50), and an open loop
//! at `--rate` req/s during which each proxy's CPU time and RSS are
//! sampled. With two CPUs, the pods run on CPU 0 and every proxy on CPU 1.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use mesh_e2e::{
    cluster::{hbone_listening, Cluster},
    ztunnel_proc::{Ztunnel, ZtunnelSpec, SOCKS5_ADDR},
};
use mesh_testkit::try_eventually;
use serde_json::Value;

use crate::{
    bench::{cpu_seconds, gbit, status_kib},
    bench_l4_proc::{can_pin, measure_during, pin_threads, PodsPinned, Usage, PROXY_CPU},
    bench_l4_report::{print_table, verdict, worst_spread, Path, Row, Spread},
    step,
};

const ECHO: u16 = 9080;
const SINK: u16 = 9090;
const SETUP_COUNT: &str = "300";
/// The open loop: seconds per run and connections it spreads over.
const RATE_SECONDS: &str = "5";
const RATE_CONNECTIONS: &str = "4";
/// ztunnel's default worker count, and our agent's.
const ZTUNNEL_WORKERS: usize = 2;

/// `bench l4` options this part uses.
#[derive(Debug, Clone)]
pub struct CrossOpts {
    pub bytes: u64,
    pub repeats: u32,
    pub rounds: u32,
    pub rate: u32,
    pub ztunnel: Option<PathBuf>,
}

/// One path: where its load tool runs, where it sends, which proxies
/// carry it.
struct Target {
    path: Path,
    pod: &'static str,
    server: &'static str,
    socks5: Option<SocketAddr>,
    /// (name, pid) of each proxy on the path, client side first.
    proxies: Vec<(String, u32)>,
}

/// Everything measured, one value per repeat.
struct Figures {
    throughput: Row,
    rr_p50: Row,
    rr_p99: Row,
    setup_p50: Row,
    rate_p50: Row,
    rate_p99: Row,
    /// Proxy name → (vCPU per 1 k req/s, RSS MB per 1 k req/s) per repeat.
    per_krps: Vec<(String, Vec<f64>, Vec<f64>)>,
    /// Proxy name → CPU seconds over all its path's runs.
    cpu_total: Vec<(String, f64)>,
}

impl Figures {
    fn new() -> Self {
        Self {
            throughput: Row::new("throughput, Gbit/s"),
            rr_p50: Row::new("1-byte RR p50, us"),
            rr_p99: Row::new("1-byte RR p99, us"),
            setup_p50: Row::new("new connection + 1 RT p50, us"),
            rate_p50: Row::new("open loop p50, us"),
            rate_p99: Row::new("open loop p99, us"),
            per_krps: vec![],
            cpu_total: vec![],
        }
    }

    fn add_cpu(&mut self, name: &str, s: f64) {
        match self.cpu_total.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += s,
            None => self.cpu_total.push((name.to_string(), s)),
        }
    }

    fn add_per_krps(&mut self, name: &str, vcpu: f64, rss: f64) {
        match self.per_krps.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, v, r)) => {
                v.push(vcpu);
                r.push(rss);
            }
            None => self
                .per_krps
                .push((name.to_string(), vec![vcpu], vec![rss])),
        }
    }
}

pub fn run(o: &CrossOpts) -> anyhow::Result<()> {
    step("cross node, HBONE mTLS: direct vs this mesh vs ztunnel (when given), interleaved");
    // Declared first, dropped last: the CPU set comes back after teardown.
    let pods_pinned = if can_pin() {
        Some(PodsPinned::new()?)
    } else {
        None
    };
    let with_z = o.ztunnel.is_some();
    let node1: &[&str] = if with_z {
        &["meshed", "direct", "zclient"]
    } else {
        &["meshed", "direct"]
    };
    let node2: &[&str] = if with_z {
        &["server", "zserver"]
    } else {
        &["server"]
    };
    let mut c = Cluster::new(
        "mbench",
        crate::binaries()?,
        &[("node1", node1), ("node2", node2)],
    )?;
    c.start_control(&[])?;
    c.start_agent("node1", &[])?;
    c.start_agent("node2", &[])?;
    c.agent("node1").unenroll(c.pod("direct"))?;
    c.serve("server", ECHO, Some(SINK))?;
    if with_z {
        // ztunnel owns these pods' traffic (and their port 15008).
        c.agent("node1").unenroll(c.pod("zclient"))?;
        c.agent("node2").unenroll(c.pod("zserver"))?;
        c.serve("zserver", ECHO, Some(SINK))?;
    }
    let workloads = node1.len() + node2.len();
    c.wait_ready("node1", workloads, &["meshed"])?;
    c.wait_ready("node2", workloads, &["server"])?;
    // After `c`: stopped before the cluster is torn down.
    let ztunnels = match &o.ztunnel {
        Some(bin) => vec![
            start_ztunnel(bin, &c, "zclient")?,
            start_ztunnel(bin, &c, "zserver")?,
        ],
        None => vec![],
    };
    let agents = [c.agent("node1").pid(), c.agent("node2").pid()];
    let pinned = pods_pinned.is_some();
    if pinned {
        for pid in agents
            .iter()
            .copied()
            .chain(ztunnels.iter().map(Ztunnel::pid))
        {
            pin_threads(pid, PROXY_CPU)?;
        }
    }
    let mut targets = vec![
        Target {
            path: Path::Direct,
            pod: "direct",
            server: "server",
            socks5: None,
            proxies: vec![],
        },
        Target {
            path: Path::Mesh,
            pod: "meshed",
            server: "server",
            socks5: None,
            proxies: vec![
                ("agent node1".into(), agents[0]),
                ("agent node2".into(), agents[1]),
            ],
        },
    ];
    if let [zc, zs] = &ztunnels[..] {
        targets.push(Target {
            path: Path::Ztunnel,
            pod: "zclient",
            server: "zserver",
            socks5: Some(SOCKS5_ADDR),
            proxies: vec![
                ("ztunnel node1".into(), zc.pid()),
                ("ztunnel node2".into(), zs.pid()),
            ],
        });
    }
    let mut f = Figures::new();
    for i in 0..o.repeats as usize {
        // Rotated so no path always goes first.
        let order: Vec<&Target> = (0..targets.len())
            .map(|k| &targets[(i + k) % targets.len()])
            .collect();
        let names: Vec<&str> = order.iter().map(|t| t.path.name()).collect();
        step(format!(
            "cross-node run {}/{}: {}",
            i + 1,
            o.repeats,
            names.join(", ")
        ));
        one_repeat(&c, &order, o, &mut f)?;
    }
    if let Some(zs) = ztunnels.get(1) {
        check_ztunnel_carried_mtls(&c, zs)?;
    }
    let mut proxies: Vec<(String, u32)> = targets.iter().flat_map(|t| t.proxies.clone()).collect();
    if !with_z {
        proxies.extend([("ztunnel node1".into(), 0), ("ztunnel node2".into(), 0)]);
    }
    print_report(o, &f, &proxies, pinned);
    Ok(())
}

fn start_ztunnel(bin: &std::path::Path, c: &Cluster, pod: &str) -> anyhow::Result<Ztunnel> {
    // Our agent's listener on <pod>:15008 goes away after the unenrol.
    try_eventually(
        &format!("the agent's HBONE listener of {pod} gone"),
        Duration::from_secs(10),
        || match hbone_listening(c.pod(pod)) {
            Ok(false) => Ok(()),
            Ok(true) => Err(anyhow::anyhow!("still listening")),
            Err(e) => Err(e),
        },
    )?;
    let mut spec = ZtunnelSpec::for_pod(bin, c, pod);
    spec.worker_threads = ZTUNNEL_WORKERS;
    Ztunnel::start(spec)
}

/// One repeat: each workload on every path in `order`, back to back.
fn one_repeat(
    c: &Cluster,
    order: &[&Target],
    o: &CrossOpts,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let us = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let bytes = o.bytes.to_string();
    let rounds = o.rounds.to_string();
    let rate = o.rate.to_string();
    for t in order {
        let sink = c.pod(t.server).addr(SINK).to_string();
        let v = client(c, t, f, &["stream", "--to", &sink, "--bytes", &bytes])?;
        f.throughput.push(t.path, gbit(&v)?);
    }
    for t in order {
        let echo = c.pod(t.server).addr(ECHO).to_string();
        let v = client(c, t, f, &["rr", "--to", &echo, "--count", &rounds])?;
        f.rr_p50.push(t.path, us(&v, "p50_ns"));
        f.rr_p99.push(t.path, us(&v, "p99_ns"));
    }
    for t in order {
        let echo = c.pod(t.server).addr(ECHO).to_string();
        let v = client(c, t, f, &["conn-rr", "--to", &echo, "--count", SETUP_COUNT])?;
        f.setup_p50.push(t.path, us(&v, "p50_ns"));
    }
    for t in order {
        let echo = c.pod(t.server).addr(ECHO).to_string();
        let args = [
            "rate",
            "--to",
            &echo,
            "--rate",
            &rate,
            "--seconds",
            RATE_SECONDS,
            "--connections",
            RATE_CONNECTIONS,
        ];
        let pids: Vec<u32> = t.proxies.iter().map(|(_, p)| *p).collect();
        let (v, usage) = measure_during(&pids, || podctl(c, t, &args))?;
        let received = v["received"].as_f64().unwrap_or(0.0);
        let achieved = v["achieved_rate"].as_f64().unwrap_or(f64::NAN);
        anyhow::ensure!(
            received > 0.0 && achieved > 0.9 * f64::from(o.rate),
            "{} path: the open loop reached {achieved:.0} of {} req/s: {v}",
            t.path.name(),
            o.rate
        );
        f.rate_p50.push(t.path, us(&v, "p50_ns"));
        f.rate_p99.push(t.path, us(&v, "p99_ns"));
        for ((name, _), u) in t.proxies.iter().zip(&usage) {
            f.add_cpu(name, u.cpu_s);
            f.add_per_krps(
                name,
                per_krps_vcpu(u, received),
                u.rss_mb / (achieved / 1000.0),
            );
        }
    }
    Ok(())
}

/// CPU-seconds per 1 000 requests = vCPU per 1 k req/s.
fn per_krps_vcpu(u: &Usage, requests: f64) -> f64 {
    u.cpu_s * 1000.0 / requests
}

/// `podctl <args>` for `t`, through its SOCKS5 proxy if any.
fn podctl(c: &Cluster, t: &Target, args: &[&str]) -> anyhow::Result<Value> {
    let socks5 = t.socks5.map(|a| a.to_string());
    let mut all: Vec<&str> = args.to_vec();
    if let Some(s) = &socks5 {
        all.extend(["--socks5", s.as_str()]);
    }
    c.client(t.pod, &all)
}

/// [`podctl`], adding the CPU time `t`'s proxies spent meanwhile.
fn client(c: &Cluster, t: &Target, f: &mut Figures, args: &[&str]) -> anyhow::Result<Value> {
    let before: Vec<f64> = t
        .proxies
        .iter()
        .map(|(_, p)| cpu_seconds(*p))
        .collect::<Result<_, _>>()?;
    let v = podctl(c, t, args)?;
    for ((name, pid), b) in t.proxies.iter().zip(before) {
        f.add_cpu(name, cpu_seconds(*pid)? - b);
    }
    Ok(v)
}

/// The ztunnel path is HBONE mTLS end to end: the server-side ztunnel
/// counts the connections it received with mutual TLS.
fn check_ztunnel_carried_mtls(c: &Cluster, zs: &Ztunnel) -> anyhow::Result<()> {
    let stats = SocketAddr::from(([127, 0, 0, 1], 15020));
    let text = mesh_e2e::netns::http_get_in(&c.pod("zserver").netns.path(), stats, "/metrics")?;
    let opened: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("connection_security_policy=\"mutual_tls\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    anyhow::ensure!(
        opened > 0.0,
        "the server-side ztunnel counted no mutual-TLS connections:\n{}",
        zs.log_tail()
    );
    Ok(())
}

fn print_report(o: &CrossOpts, f: &Figures, proxies: &[(String, u32)], pinned: bool) {
    let rows = [
        f.throughput.clone(),
        f.rr_p50.clone(),
        f.rr_p99.clone(),
        f.setup_p50.clone(),
        f.rate_p50.clone(),
        f.rate_p99.clone(),
    ];
    print_table(
        &format!(
            "bench l4 (cross node, HBONE mTLS, same run; medians of {} repeats, ratios ±spread)",
            o.repeats
        ),
        &rows,
    );
    println!(
        "  open loop: {} req/s, {RATE_CONNECTIONS} connections, {RATE_SECONDS} s; latency from the intended send time",
        o.rate
    );
    println!(
        "  ztunnel's set-up includes one loopback SOCKS5 round trip (no iptables in the pods)"
    );
    println!(
        "  {}",
        if pinned {
            "pinned: load tool and servers on CPU 0, every proxy on CPU 1"
        } else {
            "not pinned (fewer than 2 CPUs)"
        }
    );
    println!();
    println!(
        "  {:<16} {:>14} {:>12} {:>20} {:>22}",
        "proxy", "CPU s, all runs", "peak RSS MB", "vCPU per 1k req/s", "RSS MB per 1k req/s"
    );
    for (name, pid) in proxies {
        if *pid == 0 {
            println!("  {name:<16} {:>14}", "not given");
            continue;
        }
        let cpu = f
            .cpu_total
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, s)| *s);
        let hwm = status_kib(*pid, "VmHWM").unwrap_or(0) as f64 / 1024.0;
        let (vcpu, rss) = f
            .per_krps
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, r)| (Spread::of(v), Spread::of(r)))
            .unwrap_or((None, None));
        let fmt = |s: Option<Spread>, d: usize| {
            s.map_or("-".into(), |s| {
                format!("{:.d$} ±{:.0}%", s.median, s.pm_percent())
            })
        };
        println!(
            "  {name:<16} {cpu:>14.2} {hwm:>12.1} {:>20} {:>22}",
            fmt(vcpu, 4),
            fmt(rss, 2)
        );
    }
    print_goals(f, proxies);
    match worst_spread(&rows) {
        Some((pm, what)) => println!("  ratios stable to ±{pm:.0} % (widest: {what})"),
        None => println!("  no ratios"),
    }
}

fn print_goals(f: &Figures, proxies: &[(String, u32)]) {
    let ratio_goal = |label: &str, row: &Row, goal: f64, at_least: bool| match row
        .ratio(Path::Mesh, Path::Ztunnel)
    {
        Some(s) => {
            let ok = if at_least {
                s.median >= goal
            } else {
                s.median <= goal
            };
            let op = if at_least { ">=" } else { "<=" };
            println!(
                "  {label:<44} {op} {goal:.2}x  {:>6.2}x ±{:.0}%  {}",
                s.median,
                s.pm_percent(),
                verdict(ok)
            );
        }
        None => println!("  {label:<44} ztunnel not given (--ztunnel PATH)"),
    };
    println!();
    println!("goals (this mesh against ztunnel, same run)");
    ratio_goal("throughput, mesh/ztunnel", &f.throughput, 1.25, true);
    ratio_goal("1-byte RR p99, mesh/ztunnel", &f.rr_p99, 0.8, false);
    ratio_goal(
        "new connection + 1 RT p50, mesh/ztunnel",
        &f.setup_p50,
        0.6,
        false,
    );
    for (name, _) in proxies.iter().filter(|(n, _)| n.starts_with("agent")) {
        if let Some((_, v, r)) = f.per_krps.iter().find(|(n, _, _)| n == name) {
            let (v, r) = (Spread::of(v), Spread::of(r));
            if let (Some(v), Some(r)) = (v, r) {
                println!(
                    "  {name}: vCPU per 1k req/s <= 0.03: {:.4}  {}; RSS per 1k req/s <= 8 MB: {:.2} MB  {}",
                    v.median,
                    verdict(v.median <= 0.03),
                    r.median,
                    verdict(r.median <= 8.0)
                );
            }
        }
    }
    let mesh_direct = f.throughput.ratio(Path::Mesh, Path::Direct);
    let p50 = f.rr_p50.median(Path::Mesh);
    let setup = f.setup_p50.median(Path::Mesh);
    if let (Some(t), Some(p), Some(s)) = (mesh_direct, p50, setup) {
        println!(
            "  earlier targets: throughput mesh/direct >= 0.45x {}, RR p50 <= 60 us {}, set-up <= 500 us {}",
            verdict(t.median >= 0.45),
            verdict(p.median <= 60.0),
            verdict(s.median <= 500.0)
        );
    }
}
