//! `cargo xtask bench l4`, third part: what telemetry and authorization
//! cost on the path where the agent evaluates policy (same-node delivery
//! between two mesh pods). Baseline: the agent with metrics off, access log
//! off, no policy. Featured: metrics on (access log off) and a 100-rule
//! AuthorizationPolicy set whose matching rule is the last one. The two are
//! interleaved (the agent restarted between them) in the same run, with the
//! pods pinned to CPU 0 and the agent to CPU 1 (see `PODS_CPU`): the
//! absolute round-trip figures are therefore higher than part 1's and not
//! comparable with them; the A/B difference is what this part measures.
//! `MESH_BENCH_FEATURE=metrics|policy` measures one of the two alone.
use mesh_testkit::Attempt;
use serde_json::Value;

use crate::{
    bench::{gbit, median, verdict},
    bench_l4_proc::{can_pin, pin_threads, PodsPinned, PROXY_CPU},
    step,
};

const ECHO: u16 = 9080;
const SINK: u16 = 9090;

/// Agent flags of each configuration. The same-node fast path is off in
/// both: this part measures the agent's own evaluation, per connection.
const BASELINE: &[&str] = &["--metrics=false", "--access-log=false", "--fast-path=false"];
const FEATURED: &[&str] = &["--metrics=true", "--access-log=false", "--fast-path=false"];

/// 99 rules that never match the client, then the one that does: an
/// ALLOW set of 100 rules evaluated for every new connection.
fn hundred_rules() -> String {
    let mut rules = String::new();
    for i in 0..99 {
        rules += &format!(
            "  - from:\n    - source:\n        principals: [\"cluster.local/ns/team{i}/sa/client\"]\n    to:\n    - operation:\n        ports: [\"{}\"]\n",
            10_000 + i
        );
    }
    rules +=
        "  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/client\"]\n";
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: hundred-rules\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: server\n  action: ALLOW\n  rules:\n{rules}"
    )
}

struct Figures {
    gbit: f64,
    p50_us: f64,
    setup_p50_us: f64,
}

fn measure(c: &mesh_e2e::cluster::Cluster, bytes: u64, rounds: u32) -> anyhow::Result<Figures> {
    let sink = c.pod("server").addr(SINK).to_string();
    let echo = c.pod("server").addr(ECHO).to_string();
    let stream = c.client(
        "client",
        &["stream", "--to", &sink, "--bytes", &bytes.to_string()],
    )?;
    let rr = c.client(
        "client",
        &["rr", "--to", &echo, "--count", &rounds.to_string()],
    )?;
    let setup = c.client("client", &["conn-rr", "--to", &echo, "--count", "500"])?;
    let us = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    Ok(Figures {
        gbit: gbit(&stream)?,
        p50_us: us(&rr, "p50_ns"),
        setup_p50_us: us(&setup, "p50_ns"),
    })
}

fn restart(c: &mut mesh_e2e::cluster::Cluster, args: &[&str], pin: bool) -> anyhow::Result<()> {
    c.stop_agent("node1");
    c.start_agent("node1", args)?;
    c.wait_ready("node1", 2, &["client", "server"])?;
    if pin {
        pin_threads(c.agent("node1").pid(), AGENT_CPU)?;
    }
    Ok(())
}

/// The pods (this process's children) run on CPU 0, the agent on CPU 1:
/// without pinning, where the scheduler happens to place the three
/// processes moves the round-trip p50 between ~45 and ~75 µs from run to
/// run, which drowns the few microseconds measured here.
const AGENT_CPU: usize = PROXY_CPU;

pub fn run(bytes: u64, repeats: u32, rounds: u32) -> anyhow::Result<()> {
    // The differences measured here are a few percent and microseconds,
    // below run-to-run noise on a small VM: at least five interleaved pairs.
    let repeats = repeats.max(5);
    // MESH_BENCH_FEATURE=metrics|policy measures one of the two alone (to
    // attribute a cost); the default is both, which is the target.
    let feature = std::env::var("MESH_BENCH_FEATURE").unwrap_or_else(|_| "both".into());
    step("policy and telemetry cost: node1 pods `client` and `server`, same-node delivery");
    let two_cpus = can_pin();
    // Inherited by every pod process started from here on; undone at the end.
    let _pinned = two_cpus.then(PodsPinned::new).transpose()?;
    let mut c = mesh_e2e::cluster::Cluster::new(
        "mbench",
        crate::binaries()?,
        &[("node1", &["client", "server"])],
    )?;
    c.start_control(&[])?;
    c.start_agent("node1", BASELINE)?;
    c.serve("server", ECHO, Some(SINK))?;
    c.wait_ready("node1", 2, &["client", "server"])?;
    let mut base = vec![];
    let mut feat = vec![];
    for i in 1..=repeats {
        step(format!(
            "run {i}/{repeats}: baseline (no metrics, no policy), then metrics + 100 rules"
        ));
        let _ = std::fs::remove_file(c.config_dir().join("40-bench-policy.yaml"));
        restart(&mut c, BASELINE, two_cpus)?;
        wait_policies(&c, 0)?;
        base.push(measure(&c, bytes, rounds)?);
        report("baseline", base.last());
        if feature != "metrics" {
            c.write_config("40-bench-policy.yaml", &hundred_rules())?;
        }
        let flags = if feature == "policy" {
            BASELINE
        } else {
            FEATURED
        };
        restart(&mut c, flags, two_cpus)?;
        wait_policies(&c, usize::from(feature != "metrics"))?;
        feat.push(measure(&c, bytes, rounds)?);
        report("featured", feat.last());
    }
    if feature != "policy" {
        let metrics = c.agent("node1").metrics_text().unwrap_or_default();
        anyhow::ensure!(
            metrics.contains("istio_tcp_connections_opened_total"),
            "the featured agent recorded no TCP metrics"
        );
    }
    let med = |v: &[Figures], f: fn(&Figures) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        median(&mut x)
    };
    let (bt, ft) = (med(&base, |f| f.gbit), med(&feat, |f| f.gbit));
    let (b50, f50) = (med(&base, |f| f.p50_us), med(&feat, |f| f.p50_us));
    let (bs, fs) = (
        med(&base, |f| f.setup_p50_us),
        med(&feat, |f| f.setup_p50_us),
    );
    println!();
    println!(
        "bench l4 (policy + telemetry cost, same-node delivery, same run)  baseline  featured"
    );
    println!(
        "  throughput, Gbit/s (median of {repeats})                       {bt:>9.2} {ft:>9.2}   {:>6.3}x  target >= 0.95x {}",
        ft / bt,
        verdict(ft / bt >= 0.95)
    );
    println!(
        "  1-byte RR p50, us                                      {b50:>9.1} {f50:>9.1}   {:+.1} us  target <= +5 us {}",
        f50 - b50,
        verdict(f50 - b50 <= 5.0)
    );
    println!(
        "  new connection + 1 RT p50, us (policy evaluated here)  {bs:>9.1} {fs:>9.1}   {:+.1} us",
        fs - bs
    );
    Ok(())
}

fn report(what: &str, f: Option<&Figures>) {
    if let Some(f) = f {
        println!(
            "    {what}: {:.2} Gbit/s, RR p50 {:.1} us, connect+RT p50 {:.1} us",
            f.gbit, f.p50_us, f.setup_p50_us
        );
    }
}

/// Waits until the agent holds `n` user policies.
fn wait_policies(c: &mesh_e2e::cluster::Cluster, n: usize) -> anyhow::Result<()> {
    mesh_testkit::try_eventually(
        &format!("the agent to hold {n} policies"),
        std::time::Duration::from_secs(20),
        || match c.agent("node1").mesh() {
            Ok(mesh) if mesh["policies"].as_array().map_or(0, Vec::len) == n => Attempt::Done(()),
            Ok(mesh) => Attempt::Pending(mesh.to_string()),
            // The agent's admin API not answering is an error, not a state to wait out.
            Err(e) => Attempt::GiveUp(format!("{e:#}")),
        },
    )?;
    Ok(())
}
