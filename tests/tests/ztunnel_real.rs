//! Tunnels both ways between our agent and a real Istio ztunnel, when
//! `MESH_PEER_ZTUNNEL` names a ztunnel binary the user built (the project
//! never fetches or builds it; without the variable each test says so and
//! returns). The ztunnel runs in dedicated mode inside pod `zs`'s network
//! namespace on node2 (no agent of ours there), fed by our control plane
//! over TLS (15012: workloads, policies and its certificate); our agent
//! serves node1's pod `a`.
//!
//! - our agent → ztunnel: `a` connects to `zs`'s echo port; our agent
//!   tunnels to `<zs>:15008`, where ztunnel terminates and delivers.
//! - ztunnel → our agent: a client in `zs` asks ztunnel's SOCKS5 listener
//!   for `a`'s echo port; ztunnel tunnels to `<a>:15008`, our agent's
//!   listener in `a`'s namespace.
use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use mesh_e2e::{
    bins::Binaries,
    cluster::Cluster,
    netns,
    ztunnel_proc::{Ztunnel, ZtunnelSpec, SOCKS5_ADDR},
};
use mesh_testkit::eventually;

const ECHO: u16 = 9080;
const TAG: &str = "mzr";
const WAIT: Duration = Duration::from_secs(30);

/// The ztunnel binary, or `None` (and a note) when not given.
fn ztunnel() -> Option<PathBuf> {
    match std::env::var_os("MESH_PEER_ZTUNNEL") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "MESH_PEER_ZTUNNEL={} is not a file",
                path.display()
            );
            Some(path)
        }
        None => {
            eprintln!(
                "skipped: set MESH_PEER_ZTUNNEL to a ztunnel binary you built to run the \
                 real-peer tests (docs/istio-interop.md)"
            );
            None
        }
    }
}

/// ztunnel in `pod` (dedicated mode, SOCKS5 on, one worker).
fn start_ztunnel(bin: &std::path::Path, c: &Cluster, pod: &str) -> Ztunnel {
    Ztunnel::start(ZtunnelSpec::for_pod(bin, c, pod)).unwrap_or_else(|e| panic!("{e:#}"))
}

fn cluster() -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["zs"])],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.serve("a", ECHO, None).unwrap();
    c.serve("zs", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    c
}

#[test]
fn our_agent_tunnels_into_a_real_ztunnel() {
    let Some(bin) = ztunnel() else { return };
    let c = cluster();
    let z = start_ztunnel(&bin, &c, "zs");
    let to = c.pod("zs").addr(ECHO).to_string();
    let out = c
        .client("a", &["echo", "--to", &to, "--bytes", "65536"])
        .unwrap_or_else(|e| panic!("{e:#}\nztunnel:\n{}", z.log_tail()));
    assert_eq!(
        out["received"],
        65536,
        "{out}\nagent:\n{}\nztunnel:\n{}",
        c.agent("node1").log_tail(),
        z.log_tail()
    );
    assert_eq!(out["sent_sha256"], out["received_sha256"], "{out}");
}

#[test]
fn a_real_ztunnel_tunnels_into_our_agent() {
    let Some(bin) = ztunnel() else { return };
    let c = cluster();
    let z = start_ztunnel(&bin, &c, "zs");
    let target = c.pod("a").addr(ECHO);
    let data = b"from a real ztunnel".repeat(100);
    let echoed = eventually("a round trip through ztunnel's SOCKS5", WAIT, || {
        socks5_echo(&c, target, &data).map_err(|e| {
            format!(
                "{e:#}\nztunnel:\n{}\nagent:\n{}",
                z.log_tail(),
                c.agent("node1").log_tail()
            )
        })
    });
    assert_eq!(echoed, data);
}

/// Through ztunnel's SOCKS5 listener: send `data` to `target`, read the
/// echo.
fn socks5_echo(c: &Cluster, target: SocketAddr, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = socks5_connect(c, target)?;
    s.write_all(data)?;
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

/// A connection to `target` through ztunnel's SOCKS5 listener in `zs`,
/// after the CONNECT was answered.
fn socks5_connect(c: &Cluster, target: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
    let mut s = netns::connect_in(
        &c.pod("zs").netns.path(),
        SOCKS5_ADDR,
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    mesh_e2e::socks5::handshake(&mut s, SOCKS5_ADDR, target)?;
    Ok(s)
}

/// A Service with our waypoint, called from a real ztunnel: ztunnel sends
/// the Service's traffic to the waypoint's pod (`:authority` the VIP), our
/// waypoint routes it to the endpoint, a pod our agent serves.
#[test]
fn a_real_ztunnel_reaches_a_service_through_our_waypoint() {
    const HTTP: u16 = 9090;
    let Some(bin) = ztunnel() else { return };
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        "mzw",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["ratings", "waypoint"]), ("node2", &["zs"])],
    )
    .unwrap();
    c.label_pod("ratings", &[("app", "ratings")]).unwrap();
    c.label_namespace("istio.io/use-waypoint", "waypoint")
        .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    c.write_config(
        "10-ratings.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ratings\n  namespace: default\nspec:\n  \
         clusterIP: 10.96.0.70\n  selector:\n    app: ratings\n  ports:\n  - name: http\n    \
         port: 9090\n    targetPort: 9090\n",
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.serve_http("ratings", "v1", HTTP, &[]).unwrap();
    c.wait_ready("node1", 3, &["ratings"]).unwrap();
    let waypoint = c.start_waypoint("waypoint", "waypoint").unwrap().pid();
    let z = start_ztunnel(&bin, &c, "zs");
    let vip = SocketAddr::from(([10, 96, 0, 70], HTTP));
    let request = b"GET / HTTP/1.1\r\nHost: ratings:9090\r\nConnection: close\r\n\r\n";
    let answer = eventually("zs -> ztunnel -> our waypoint -> ratings", WAIT, || {
        socks5_exchange(&c, vip, request).map_err(|e| {
            format!(
                "{e:#}\nztunnel:\n{}\nagent:\n{}",
                z.log_tail(),
                c.agent("node1").log_tail()
            )
        })
    });
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"pod\":\"ratings\""), "{text}");
    // It went through the waypoint, which knew the caller by its identity.
    let wp = c
        .waypoints
        .iter()
        .find(|w| w.pid() == waypoint)
        .expect("the waypoint");
    let metrics = wp.metrics_text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/zs\"")
                && l.contains("destination_workload=\"ratings\"")),
        "{metrics}"
    );
}

/// Through ztunnel's SOCKS5 listener: send `data` to `target`, read until
/// the other side closes.
fn socks5_exchange(c: &Cluster, target: SocketAddr, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = socks5_connect(c, target)?;
    s.write_all(data)?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    anyhow::ensure!(!got.is_empty(), "the tunnel closed without an answer");
    Ok(got)
}
