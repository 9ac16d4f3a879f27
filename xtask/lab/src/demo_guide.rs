//! The commands the demos print for a person to try from another shell,
//! as data: the demo prints them, and `tests/demo_guide.rs` runs every one
//! against a live demo mesh and checks that each command the README shows
//! is one of them (README placeholders like `<pid>` match any word).
use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};
use mesh_e2e::cluster::Cluster;

use crate::{demo_egress, demo_ingress};

/// One command to try, what it shows, and a piece of its output that
/// proves it worked.
#[derive(Debug, Clone)]
pub struct Hint {
    /// A shell command line, exactly as printed.
    pub command: String,
    /// What it shows (printed as a `#` comment).
    pub shows: &'static str,
    /// Text its output contains when it works.
    pub expect: &'static str,
}

fn hint(command: String, shows: &'static str, expect: &'static str) -> Hint {
    Hint {
        command,
        shows,
        expect,
    }
}

/// node1's enrolment map, as bpftool shows it.
fn enrolled_map(c: &Cluster) -> Hint {
    hint(
        format!(
            "bpftool map dump pinned /sys/fs/bpf/{}/maps/enrolled_netns",
            c.instance("node1")
        ),
        "the pods node1's kernel captures",
        "key",
    )
}

/// `meshctl proxy-status` and `meshctl analyze` of the demo's control plane.
fn control_plane(c: &Cluster, meshctl: &str) -> [Hint; 2] {
    [
        hint(
            format!("{meshctl} --control-plane {} proxy-status", c.underlay.name),
            "who is connected to the control plane",
            "SYNCED",
        ),
        hint(
            format!("{meshctl} analyze {}", c.config_dir().display()),
            "the YAML the control plane reads, checked",
            "",
        ),
    ]
}

/// The bookinfo demo's commands (pods are network namespaces named after
/// the pod; service names resolve inside them).
pub fn bookinfo(c: &Cluster) -> Vec<Hint> {
    let m = c.bins.agent.with_file_name("meshctl").display().to_string();
    vec![
        hint(
            "ip netns exec sleep curl -s http://reviews:9080/".into(),
            "80 % v1, 20 % v2",
            "\"pod\":\"reviews-v",
        ),
        hint(
            "ip netns exec sleep curl -s -H 'end-user: jason' http://reviews:9080/".into(),
            "v3",
            "\"version\":\"v3\"",
        ),
        hint(
            "ip netns exec productpage-v1 curl -s -o /dev/null -w '%{http_code}\\n' 'http://ratings:9080/?status=500'"
                .into(),
            "retried by the waypoint, then 500",
            "500",
        ),
        hint(
            "ip netns exec waypoint curl -s 127.0.0.1:15000/metrics | grep istio_requests_total"
                .into(),
            "the waypoint's request metrics (admin on the pod's loopback)",
            "istio_requests_total{",
        ),
        hint(
            format!("{m} proxy-config route waypoint"),
            "also listener, cluster, endpoint",
            "reviews",
        ),
        enrolled_map(c),
        hint(
            format!(
                "curl -s 'http://127.0.0.1:{}/graph/data?namespace=default&window=60'",
                crate::demo_dashboard::PORT
            ),
            "the service graph's numbers, as the page polls them (through meshctl dashboard)",
            "\"edges\"",
        ),
    ]
    .into_iter()
    .chain(ingress(c))
    .chain(egress(c))
    .chain(control_plane(c, &m))
    .collect()
}

/// Bookinfo through the ingress gateway: from the host's root namespace
/// (through the demo's `meshctl port-forward`) and from `outside` (a pod
/// outside the mesh, by the gateway's own address); plain HTTP, and
/// HTTPS checked against the demo's CA and the certificate's SAN.
pub fn ingress(c: &Cluster) -> [Hint; 4] {
    let ip = c.pod(demo_ingress::GATEWAY).ip;
    let outside = demo_ingress::OUTSIDE;
    let host = demo_ingress::HOST;
    let ca = demo_ingress::ca_pem(c);
    let http = demo_ingress::HOST_HTTP_PORT;
    let https = demo_ingress::HOST_HTTPS_PORT;
    [
        hint(
            format!("curl -s http://127.0.0.1:{http}/productpage"),
            "ingress from the host, through meshctl port-forward to the gateway's :80",
            "\"pod\":\"productpage-v1\"",
        ),
        hint(
            format!(
                "curl -s --resolve {host}:{https}:127.0.0.1 --cacert {} https://{host}:{https}/productpage",
                ca.display()
            ),
            "HTTPS from the host (to the gateway's :443), the certificate checked",
            "\"pod\":\"productpage-v1\"",
        ),
        hint(
            format!("ip netns exec {outside} curl -s http://{ip}/productpage"),
            "ingress over HTTP: the gateway routes /productpage to productpage",
            "\"pod\":\"productpage-v1\"",
        ),
        hint(
            format!(
                "ip netns exec {outside} curl -s --resolve {host}:443:{ip} --cacert {} https://{host}/productpage",
                ca.display()
            ),
            "ingress over HTTPS: the certificate checked against its SAN",
            "\"pod\":\"productpage-v1\"",
        ),
    ]
}

/// Egress from `sleep` to the ServiceEntry host served outside the mesh:
/// the pod's DNS query (to dnsmasq, its resolver) is answered by node1's
/// agent with the entry's VIP, and the agent carries the connection.
fn egress(c: &Cluster) -> [Hint; 3] {
    let host = demo_egress::HOST;
    [
        hint(
            format!("ip netns exec sleep getent hosts {host}"),
            "the entry's VIP (240.240.0.0/16), answered by node1's agent",
            "240.240.",
        ),
        hint(
            format!("ip netns exec sleep curl -s http://{host}/"),
            "egress: through node1's agent to the server outside the mesh",
            "\"pod\":\"httpbin\"",
        ),
        hint(
            format!(
                "nsenter --net={} curl -s 127.0.0.1:15020/metrics | grep 'destination_service=\"{host}\"' | grep istio_tcp_connections_opened_total",
                c.node("node1").netns.path().display()
            ),
            "node1's egress metrics",
            "istio_tcp_connections_opened_total{",
        ),
    ]
}

/// The L4 demo's commands (`--l4`): the kernel side and the agents.
pub fn l4(c: &Cluster) -> Vec<Hint> {
    let m = c.bins.agent.with_file_name("meshctl").display().to_string();
    let agent = c.bins.agent.display();
    let node1 = &c.node("node1").netns;
    let node2 = &c.node("node2").netns;
    vec![
        hint(
            "bpftool prog show name mesh_connect4".into(),
            "also mesh_connect6, mesh_sockops, mesh_inbound, mesh_dns_{send,recv,peer}{4,6}",
            "cgroup_sock_addr",
        ),
        enrolled_map(c),
        hint(
            format!("{agent} --instance {} status", c.instance("node1")),
            "what the agent of node1 has pinned and enrolled",
            "enrolled",
        ),
        hint(
            format!(
                "nsenter --net={} curl -s 127.0.0.1:15000/config_dump",
                node1.path().display()
            ),
            "node1's agent: workloads, services, policies it holds",
            "workloads",
        ),
        hint(
            format!(
                "nsenter --net={} curl -s 127.0.0.1:15020/metrics | grep istio_tcp",
                node2.path().display()
            ),
            "node2's Istio TCP metrics",
            "istio_tcp_connections_opened_total",
        ),
        hint(
            format!("{m} proxy-config workload {}", node1.name),
            "a node's view of the workloads",
            "productpage",
        ),
        hint(
            format!("{m} proxy-config policy {}", node2.name),
            "the authorization policies node2 enforces",
            "ratings-from-reviews",
        ),
        hint(
            format!("{m} proxy-config connections {}", node2.name),
            "node2's live and recent connections",
            "reviews",
        ),
        hint(
            format!("{m} bpf --instance {}", c.instance("node1")),
            "programs, links and maps, explained",
            "mesh_connect4",
        ),
    ]
    .into_iter()
    .chain(control_plane(c, &m))
    .collect()
}

/// What a demo prints once its mesh is up: where its YAML is, its
/// service graph page (when `meshctl dashboard` serves one), the commands
/// to try, and how it stops.
pub fn print_intro(
    c: &Cluster,
    hints: &[Hint],
    service_graph: Option<&str>,
    duration: Option<u64>,
) {
    println!();
    println!(
        "  control plane YAML: {} (edit it: changes apply live)",
        c.config_dir().display()
    );
    if let Some(url) = service_graph {
        println!("  service graph: {url} (open it in a browser: live traffic, errors, mTLS, canary split)");
    }
    println!("  try, from another shell:");
    print(hints);
    println!(
        "  stop with Ctrl-C{}",
        duration
            .map(|d| format!(" (or wait {d} s)"))
            .unwrap_or_default()
    );
    println!();
}

/// Prints the hints, one per line, with what each shows.
pub fn print(hints: &[Hint]) {
    let width = hints
        .iter()
        .map(|h| h.command.len())
        .max()
        .unwrap_or(0)
        .min(72);
    for h in hints {
        println!("    {:<width$}  # {}", h.command, h.shows);
    }
}

/// Runs a hint as a person would (`sh -c`, from the workspace root) and
/// returns its output; fails when it exits non-zero or lacks `expect`.
pub fn run(h: &Hint, dir: &Path) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(&h.command)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", h.command))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "`{}` exited with {}: {}{}",
            h.command,
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !stdout.contains(h.expect) {
        bail!("`{}` printed no {:?}: {stdout}", h.command, h.expect);
    }
    Ok(stdout)
}

/// True when `readme` (a README command with `<placeholder>` words and
/// `target/release/` paths) is `command` with the placeholders filled in
/// and the binaries' directory `bin_dir`.
pub fn readme_matches(readme: &str, command: &str, bin_dir: &Path) -> bool {
    let command = command.replace(&format!("{}/", bin_dir.display()), "target/release/");
    let readme: Vec<&str> = readme.split_whitespace().collect();
    let command: Vec<&str> = command.split_whitespace().collect();
    readme.len() == command.len() && readme.iter().zip(&command).all(|(r, c)| word_matches(r, c))
}

/// One word: literal text, where each `<…>` stands for one or more
/// characters.
fn word_matches(pattern: &str, word: &str) -> bool {
    let Some(open) = pattern.find('<') else {
        return pattern == word;
    };
    let Some(close) = pattern[open..].find('>').map(|i| open + i) else {
        return pattern == word;
    };
    let (prefix, rest) = (&pattern[..open], &pattern[close + 1..]);
    let Some(tail) = word.strip_prefix(prefix) else {
        return false;
    };
    // The placeholder takes at least one character, then the rest matches.
    (1..=tail.len()).any(|n| tail.is_char_boundary(n) && word_matches(rest, &tail[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_placeholders_match_one_or_more_characters() {
        let bins = Path::new("/w/target/debug");
        assert!(readme_matches(
            "bpftool map dump pinned /sys/fs/bpf/mdemo<pid>x0-node1/maps/enrolled_netns",
            "bpftool map dump pinned /sys/fs/bpf/mdemo123x0-node1/maps/enrolled_netns",
            bins
        ));
        assert!(readme_matches(
            "target/release/meshctl analyze <config-dir>",
            "/w/target/debug/meshctl analyze /tmp/x-cluster/config",
            bins
        ));
        assert!(!readme_matches(
            "bpftool prog show name mesh_connect4",
            "bpftool prog show name mesh_connect6",
            bins
        ));
        assert!(!readme_matches("curl <url>", "curl", bins));
    }
}
