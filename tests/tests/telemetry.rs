//! Telemetry and admin end to end: Istio's TCP metrics after known traffic
//! (checked in the exposition and through a real Prometheus), bytes of a
//! long-lived connection growing before it closes (same node, and across
//! nodes on the destination's agent), access log
//! lines and their runtime switch, `/config_dump`, readiness and
//! `/quitquitquit`. Needs root and Debian's `prometheus`.
use std::time::Duration;

use mesh_e2e::{bins::Binaries, cluster::Cluster, prometheus::Prometheus};
use mesh_testkit::eventually;

const ECHO: u16 = 9080;
const TAG: &str = "mtl";

fn cluster() -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["b"])],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    c.wait_ready("node2", 2, &["b"]).unwrap();
    c
}

/// The value of the series of `name` whose labels include all of `labels`
/// (summed over matching series), from a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn echo(c: &Cluster, bytes: u64) {
    let to = c.pod("b").addr(ECHO).to_string();
    let out = c
        .client("a", &["echo", "--to", &to, "--bytes", &bytes.to_string()])
        .unwrap();
    assert_eq!(out["received"], bytes, "{out}");
}

/// Waits until `node`'s exposition shows `name{labels}` >= `at_least`.
fn wait_metric(
    c: &Cluster,
    node: &str,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> String {
    let what = format!("{node}: {name}{labels:?} reaching {at_least}");
    eventually(&what, Duration::from_secs(10), || {
        let text = c.agent(node).metrics_text().unwrap();
        if sample(&text, name, labels) >= at_least {
            Ok(text)
        } else {
            Err(text
                .lines()
                .filter(|l| l.starts_with("istio_"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    })
}

#[test]
fn istio_tcp_metrics_count_known_traffic_and_prometheus_scrapes_them() {
    let c = cluster();
    const BYTES: u64 = 1 << 20;
    const CONNS: u64 = 3;
    for _ in 0..CONNS {
        echo(&c, BYTES);
    }
    let identity_labels = [
        ("source_workload", "a"),
        ("source_workload_namespace", "default"),
        ("source_principal", "spiffe://cluster.local/ns/default/sa/a"),
        ("source_app", "a"),
        ("destination_workload", "b"),
        ("destination_workload_namespace", "default"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/default/sa/b",
        ),
        ("destination_app", "b"),
        ("connection_security_policy", "mutual_tls"),
        ("response_flags", "-"),
    ];
    for (node, reporter) in [("node1", "source"), ("node2", "destination")] {
        let mut labels = vec![("reporter", reporter)];
        labels.extend_from_slice(&identity_labels);
        let text = wait_metric(
            &c,
            node,
            "istio_tcp_connections_closed_total",
            &labels,
            CONNS as f64,
        );
        let opened = sample(&text, "istio_tcp_connections_opened_total", &labels);
        let sent = sample(&text, "istio_tcp_sent_bytes_total", &labels);
        let received = sample(&text, "istio_tcp_received_bytes_total", &labels);
        assert_eq!(opened, CONNS as f64, "{node} opened");
        // An echo: as many bytes each way.
        assert_eq!(sent, (CONNS * BYTES) as f64, "{node} sent");
        assert_eq!(received, (CONNS * BYTES) as f64, "{node} received");
        assert!(!text.contains("_total_total"), "doubled suffix");
    }

    // The same series through a real Prometheus, scraping node2's agent.
    let prom = Prometheus::start(
        &c.node("node2").netns.path(),
        &c.cgroup.path,
        "127.0.0.1:15020",
        19090,
        &c.prefix,
    )
    .unwrap();
    let got = prom
        .wait_value(
            "sum(istio_tcp_connections_opened_total{reporter=\"destination\",source_workload=\"a\",destination_workload=\"b\"})",
            Duration::from_secs(30),
            |v| v >= CONNS as f64,
        )
        .unwrap();
    assert_eq!(got, CONNS as f64);
    let bytes = prom
        .wait_value(
            "sum(istio_tcp_received_bytes_total{reporter=\"destination\",destination_app=\"b\"})",
            Duration::from_secs(10),
            |v| v > 0.0,
        )
        .unwrap();
    assert_eq!(bytes, (CONNS * BYTES) as f64);
    // Agent health: connected to xDS.
    prom.wait_value("mesh_agent_xds_connected", Duration::from_secs(10), |v| {
        v == 1.0
    })
    .unwrap();
}

/// A long-lived same-node connection (`hold`: one byte each way every
/// 100 ms) shows its bytes, with Istio's standard labels, while it is
/// open; after it closes every byte is counted exactly once.
#[test]
fn bytes_of_a_long_lived_connection_show_before_it_closes() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        "mtb",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a", "b"])],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a", "b"]).unwrap();
    let to = c.pod("b").addr(ECHO).to_string();
    let held = c
        .background("a", &["hold", "--to", &to, "--max-seconds", "10"], |v| {
            v["connected"] == true
        })
        .unwrap();
    let labels = [
        ("reporter", "source"),
        ("source_workload", "a"),
        ("source_canonical_service", "a"),
        ("source_canonical_revision", "latest"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "b"),
        ("destination_canonical_service", "b"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "tcp"),
        // Same-node delivery between two mesh workloads.
        ("connection_security_policy", "mutual_tls"),
        ("response_flags", "-"),
    ];
    let received = "istio_tcp_received_bytes_total";
    let sent = "istio_tcp_sent_bytes_total";
    let closed = "istio_tcp_connections_closed_total";
    // While open: bytes both ways, and the same scrape shows no close.
    let text = wait_metric(&c, "node1", received, &labels, 2.0);
    assert!(sample(&text, sent, &labels) > 0.0, "no sent bytes:\n{text}");
    assert_eq!(sample(&text, closed, &labels), 0.0, "already closed");
    assert!(
        c.servers[held]
            .printed_line(Duration::from_millis(10), |v| v["closed"] == true)
            .is_err(),
        "the client finished before the check"
    );
    // Both reporters (this agent is both ends).
    let mut dst_labels = labels.to_vec();
    dst_labels[0] = ("reporter", "destination");
    assert!(sample(&text, received, &dst_labels) > 0.0, "{text}");

    // After the close: exactly the bytes moved, one round trip a byte.
    let done = c.servers[held]
        .printed_line(Duration::from_secs(20), |v| v["closed"] == true)
        .unwrap();
    assert_eq!(done["error"], "still open at the deadline", "{done}");
    let trips = done["round_trips"].as_u64().unwrap() as f64;
    let text = wait_metric(&c, "node1", closed, &labels, 1.0);
    assert_eq!(sample(&text, received, &labels), trips, "{text}");
    assert_eq!(sample(&text, sent, &labels), trips, "{text}");
    assert_eq!(sample(&text, received, &dst_labels), trips, "{text}");
}

/// A long-lived tunnel between nodes (`hold`: one byte each way every
/// 100 ms): the destination's agent, which terminates HBONE and relays to
/// the pod, shows the bytes growing from scrape to scrape while the tunnel
/// is open; after it closes every byte is counted exactly once, on both
/// reporters.
#[test]
fn destination_bytes_of_a_long_lived_tunnel_grow_before_it_closes() {
    let mut c = cluster();
    let to = c.pod("b").addr(ECHO).to_string();
    let held = c
        .background("a", &["hold", "--to", &to, "--max-seconds", "10"], |v| {
            v["connected"] == true
        })
        .unwrap();
    let labels = [
        ("reporter", "destination"),
        ("source_workload", "a"),
        ("source_principal", "spiffe://cluster.local/ns/default/sa/a"),
        ("destination_workload", "b"),
        ("destination_canonical_service", "b"),
        ("request_protocol", "tcp"),
        ("connection_security_policy", "mutual_tls"),
        ("response_flags", "-"),
    ];
    let received = "istio_tcp_received_bytes_total";
    let sent = "istio_tcp_sent_bytes_total";
    let closed = "istio_tcp_connections_closed_total";
    let still_open = |c: &Cluster| {
        assert!(
            c.servers[held]
                .printed_line(Duration::from_millis(10), |v| v["closed"] == true)
                .is_err(),
            "the client finished before the check"
        );
    };
    // While open: bytes both ways, growing between scrapes, no close.
    let text = wait_metric(&c, "node2", received, &labels, 2.0);
    let first = sample(&text, received, &labels);
    assert!(sample(&text, sent, &labels) > 0.0, "no sent bytes:\n{text}");
    assert_eq!(sample(&text, closed, &labels), 0.0, "already closed");
    let text = wait_metric(&c, "node2", received, &labels, first + 3.0);
    assert_eq!(sample(&text, closed, &labels), 0.0, "already closed");
    still_open(&c);

    // After the close: exactly the bytes moved, one round trip a byte,
    // on the destination (node2) and the source (node1).
    let done = c.servers[held]
        .printed_line(Duration::from_secs(20), |v| v["closed"] == true)
        .unwrap();
    assert_eq!(done["error"], "still open at the deadline", "{done}");
    let trips = done["round_trips"].as_u64().unwrap() as f64;
    let mut src_labels = labels.to_vec();
    src_labels[0] = ("reporter", "source");
    for (node, labels) in [("node2", &labels[..]), ("node1", &src_labels[..])] {
        let text = wait_metric(&c, node, closed, labels, 1.0);
        assert_eq!(sample(&text, received, labels), trips, "{node}: {text}");
        assert_eq!(sample(&text, sent, labels), trips, "{node}: {text}");
    }
}

#[test]
fn access_log_switches_at_runtime_and_admin_endpoints_answer() {
    let mut c = cluster();
    let log_path = c.agent("node2").spec.log.clone();
    let access_lines = || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"access\"") || l.contains("access_log"))
            .count()
    };
    echo(&c, 4096);
    eventually(
        "an access log line on node2",
        Duration::from_secs(5),
        || access_lines() > 0,
    );
    let before = access_lines();
    let answer = c.agent("node2").admin_post("/logging?access=off").unwrap();
    assert!(answer.contains("access=off"), "{answer}");
    let newest_id = || {
        let conns = c.agent("node2").connections().unwrap();
        let ids = conns["recent"].as_array().into_iter().flatten();
        ids.filter_map(|r| r["id"].as_u64()).max().unwrap_or(0)
    };
    let listed = newest_id();
    echo(&c, 4096);
    // The agent logs a finished connection before it lists it: once node2
    // lists the new one, a line it would have written is in the file.
    eventually(
        "node2 listing the new connection",
        Duration::from_secs(10),
        || {
            let newest = newest_id();
            if newest > listed {
                Ok(())
            } else {
                Err(format!("newest listed id {newest}"))
            }
        },
    );
    assert_eq!(access_lines(), before, "access log still written when off");
    let bad = c.agent("node2").admin_post("/logging?level=loud");
    assert!(
        format!("{bad:?}").contains("400"),
        "a bad level must be refused with 400: {bad:?}"
    );

    let dump = c.agent("node2").admin_json("/config_dump").unwrap();
    assert!(dump["workloads"].as_array().unwrap().len() >= 2, "{dump}");
    assert!(
        !dump["certificates"].as_array().unwrap().is_empty(),
        "{dump}"
    );
    assert!(
        !dump.to_string().contains("PRIVATE KEY"),
        "key material in config_dump"
    );

    let ready = mesh_e2e::netns::http_get_in(
        &c.node("node2").netns.path(),
        "127.0.0.1:15021".parse().unwrap(),
        "/healthz/ready",
    );
    assert!(ready.is_ok(), "readiness on 15021: {ready:?}");

    c.agent("node2").admin_post("/quitquitquit").unwrap();
    let status = c
        .agents
        .get_mut("node2")
        .unwrap()
        .wait_exit(Duration::from_secs(15))
        .expect("agent did not exit after /quitquitquit");
    assert!(status.success(), "agent exited with {status}");
}
