//! HBONE conformance with Istio's ztunnel, both ways, against a test peer
//! that behaves on the wire as ztunnel does (`mesh_e2e::ztunnel_peer`):
//! node1 runs our agent with pod `a`; node2 runs no agent of ours, as a
//! node still on ztunnel would, and the peer speaks for its pods `zc`
//! (client) and `zs` (server). The peer's certificates come from our
//! control plane's CA by impersonation, as ztunnel obtains them.
use std::{net::SocketAddr, time::Duration};

use mesh_e2e::{
    bins::Binaries,
    cluster::{Cluster, CONTROL_IP},
    ztunnel_peer::{self, ca, client, server::Server, Identity},
};
use mesh_testkit::eventually;

const ECHO: u16 = 9080;
const TAG: &str = "mzc";
const WAIT: Duration = Duration::from_secs(20);

fn spiffe(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
}

/// Control plane, our agent on node1 (pod `a` enrolled, serving echo),
/// node2 left to the peer.
fn cluster() -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["zc", "zs"])],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.serve("a", ECHO, None).unwrap();
    c.wait_ready("node1", 3, &["a"]).unwrap();
    c
}

/// The peer's certificate for `sa`, asked from node2's namespace.
fn identity(c: &Cluster, sa: &str) -> Identity {
    let root = c.ca_dir().join("root-cert.pem");
    let id = spiffe(sa);
    ztunnel_peer::in_netns(&c.node("node2").netns.path(), || async {
        ca::impersonated(SocketAddr::from((CONTROL_IP, 15010)), &id, &root).await
    })
    .unwrap_or_else(|e| panic!("certificate for {sa}: {e:#}"))
}

fn baggage(workload: &str) -> String {
    format!(
        "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name={workload},\
         service.name={workload},service.version=v1"
    )
}

/// One tunnel from `zc` to `a`'s echo port; returns the status and, when
/// it is 200, what came back.
fn tunnel_from_zc(c: &Cluster, who: &Identity, data: &[u8]) -> (u16, Vec<u8>, SocketAddr) {
    let target = c.pod("a").addr(ECHO);
    let expect = spiffe("a");
    ztunnel_peer::in_netns(&c.pod("zc").netns.path(), || async {
        let mut tunnel = client::connect(&client::Connect {
            target,
            via: None,
            identity: who,
            expect_server: &expect,
            baggage: baggage("zc"),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        })
        .await?;
        let echoed = if tunnel.status == http::StatusCode::OK {
            tunnel.echo(data).await?
        } else {
            Vec::new()
        };
        Ok((tunnel.status.as_u16(), echoed, tunnel.local))
    })
    .unwrap_or_else(|e| panic!("tunnel zc -> a: {e:#}\n{}", c.agent("node1").log_tail()))
}

#[test]
fn a_ztunnel_shaped_client_reaches_an_enrolled_pod_by_its_address_without_sni() {
    let c = cluster();
    let zc = identity(&c, "zc");
    let data = b"hello from a ztunnel node".repeat(40);
    let (status, echoed, local) = tunnel_from_zc(&c, &zc, &data);
    assert_eq!(status, 200, "{}", c.agent("node1").log_tail());
    assert_eq!(echoed, data, "the echo came back altered");
    assert_eq!(
        local.ip(),
        c.pod("zc").ip,
        "the tunnel left from zc's address"
    );

    // Our agent attributes the connection to zc: by its identity and by
    // the tunnel's source address (the pod's, not a node's).
    let series = eventually("node1 reporting zc's connection", WAIT, || {
        let text = c.agent("node1").metrics_text().ok()?;
        text.lines()
            .find(|l| {
                l.starts_with("istio_tcp_connections_opened_total{")
                    && l.contains("reporter=\"destination\"")
                    && l.contains("destination_workload=\"a\"")
                    && l.contains(&format!("source_principal=\"{}\"", spiffe("zc")))
            })
            .map(str::to_string)
    });
    assert!(series.contains("source_workload=\"zc\""), "{series}");

    // Policy at the destination sees the peer's principal.
    c.write_config(
        "30-deny-zc.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-zc\n  \
         namespace: default\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source:\n        \
         principals: [\"cluster.local/ns/default/sa/zc\"]\n",
    )
    .unwrap();
    eventually("node1 holding deny-zc", WAIT, || {
        let mesh = c.agent("node1").mesh().ok()?;
        let held = mesh["policies"]
            .as_array()?
            .iter()
            .any(|p| p == "default/deny-zc");
        let kernel = mesh["kernel_policy_generation"].as_u64()?;
        (held && kernel == mesh["policy_generation"].as_u64()?).then_some(())
    });
    let (status, _, _) = tunnel_from_zc(&c, &zc, b"x");
    assert_ne!(
        status, 200,
        "a DENY on zc's principal let its tunnel through"
    );
}

#[test]
fn our_agent_tunnels_to_a_ztunnel_shaped_server_by_pod_address_as_ztunnel_does() {
    let mut c = cluster();
    c.serve("zs", ECHO, None).unwrap();
    let zs = identity(&c, "zs");
    let listen = SocketAddr::from((c.pod("zs").ip, ztunnel_peer::HBONE_PORT));
    let peer = Server::start(&c.pod("zs").netns.path(), listen, zs).unwrap();

    let to = c.pod("zs").addr(ECHO).to_string();
    let out = c
        .client("a", &["echo", "--to", &to, "--bytes", "4096"])
        .unwrap_or_else(|e| panic!("a -> zs: {e:#}\n{}", c.agent("node1").log_tail()));
    assert_eq!(
        out["received"],
        4096,
        "{out}\n{}",
        c.agent("node1").log_tail()
    );

    let seen = peer.seen();
    let tunnel = seen
        .iter()
        .find(|s| s.authority == to)
        .unwrap_or_else(|| panic!("no CONNECT to {to} reached the peer: {seen:?}"));
    assert_eq!(
        tunnel.sni, None,
        "ztunnel sends no SNI, nor do we: {tunnel:?}"
    );
    assert_eq!(tunnel.alpn.as_deref(), Some(&b"h2"[..]), "{tunnel:?}");
    assert!(tunnel.tls13, "{tunnel:?}");
    assert_eq!(
        tunnel.tcp_source.ip(),
        c.pod("a").ip,
        "the tunnel must leave from the source pod's address: {tunnel:?}"
    );
    assert_eq!(tunnel.client_identity, vec![spiffe("a")], "{tunnel:?}");
    let forwarded = tunnel
        .headers
        .iter()
        .find(|(k, _)| k == "forwarded")
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no forwarded header: {tunnel:?}"));
    assert!(
        forwarded.contains(&c.pod("a").ip.to_string()),
        "forwarded names the source pod: {forwarded}"
    );
}

const RATINGS_VIP: [u8; 4] = [10, 96, 0, 60];
const RATINGS: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ratings\n  namespace: default\nspec:\n  clusterIP: 10.96.0.60\n  selector:\n    app: ratings\n  ports:\n  - name: http\n    port: 9080\n    targetPort: 9080\n";

/// Our waypoint between two ztunnel-shaped ends: `zc` tunnels to the
/// waypoint's pod with the Service's VIP as `:authority` (as ztunnel sends
/// a Service that uses a waypoint), and the waypoint tunnels on to the
/// ratings pod `zs`, whose HBONE the peer serves.
#[test]
fn our_waypoint_takes_and_makes_tunnels_as_ztunnel_does() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        "mzw",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["waypoint"]), ("node2", &["zc", "zs"])],
    )
    .unwrap();
    c.label_pod("zs", &[("app", "ratings")]).unwrap();
    c.label_namespace("istio.io/use-waypoint", "waypoint")
        .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    c.write_config("10-ratings.yaml", RATINGS).unwrap();
    c.start_control(&[]).unwrap();
    c.start_waypoint("waypoint", "waypoint").unwrap();
    c.serve_http("zs", "v1", ECHO, &[]).unwrap();
    let zs = identity(&c, "zs");
    let listen = SocketAddr::from((c.pod("zs").ip, ztunnel_peer::HBONE_PORT));
    let peer = Server::start(&c.pod("zs").netns.path(), listen, zs).unwrap();
    let zc = identity(&c, "zc");

    let vip = SocketAddr::from((RATINGS_VIP, ECHO));
    let waypoint_ip = std::net::IpAddr::V4(c.pod("waypoint").ip);
    let expect = spiffe("waypoint");
    let answer = eventually("zc -> waypoint -> zs answering", WAIT, || {
        ztunnel_peer::in_netns(&c.pod("zc").netns.path(), || async {
            let mut tunnel = client::connect(&client::Connect {
                target: vip,
                via: Some(waypoint_ip),
                identity: &zc,
                expect_server: &expect,
                baggage: baggage("zc"),
                traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            })
            .await?;
            anyhow::ensure!(
                tunnel.status == http::StatusCode::OK,
                "CONNECT {}",
                tunnel.status
            );
            let response = tunnel
                .exchange(b"GET / HTTP/1.1\r\nHost: ratings:9080\r\nConnection: close\r\n\r\n")
                .await?;
            let text = String::from_utf8_lossy(&response).into_owned();
            anyhow::ensure!(text.starts_with("HTTP/1.1 200"), "{text}");
            Ok(text)
        })
        .map_err(|e| format!("{e:#}"))
    });
    assert!(answer.contains("\"pod\":\"zs\""), "{answer}");

    // The waypoint's own tunnel to zs, as the ztunnel-shaped server saw it.
    let seen = peer.seen();
    let tunnel = seen
        .iter()
        .find(|s| s.authority == c.pod("zs").addr(ECHO).to_string())
        .unwrap_or_else(|| panic!("the waypoint's CONNECT never reached zs: {seen:?}"));
    assert_eq!(tunnel.sni, None, "{tunnel:?}");
    assert_eq!(tunnel.alpn.as_deref(), Some(&b"h2"[..]), "{tunnel:?}");
    assert!(tunnel.tls13, "{tunnel:?}");
    assert_eq!(tunnel.tcp_source.ip(), waypoint_ip, "{tunnel:?}");
    assert_eq!(
        tunnel.client_identity,
        vec![spiffe("waypoint")],
        "{tunnel:?}"
    );
}
