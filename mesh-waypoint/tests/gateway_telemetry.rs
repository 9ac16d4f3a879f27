//! `--role gateway` telemetry of `tcp_proxy` connections, in process on
//! 127.0.0.1: after a relay, `/metrics` has Istio's four TCP series with
//! the gateway as the source, the cluster's service as the destination and
//! the bytes the client moved; a cluster without endpoints is reported
//! with `UH`; each connection has an access log line (a passed-through TLS
//! connection with its SNI).
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use envoy_types::pb::envoy::{
    config::{
        core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
        listener::v3::{filter, Filter, FilterChain, FilterChainMatch, Listener},
    },
    extensions::filters::network::tcp_proxy::v3::{tcp_proxy::ClusterSpecifier, TcpProxy},
};
use mesh_testkit::eventually_async;
use mesh_waypoint::{
    app::wiring::{ClusterManager, Telemetry, TelemetryOptions},
    gateway::ListenerManager,
    route::Deps,
    telemetry::{labels::Reporter, tcp::TcpObserver},
    upstream::connector::Connector,
};
use mesh_xds::proto::wkt;
use prost::Message;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const LIMIT: Duration = Duration::from_secs(10);
const ECHO: &str = "outbound|9000||echo.default.svc.cluster.local";
const EMPTY: &str = "outbound|9001||down.default.svc.cluster.local";

fn tcp_proxy(cluster: &str) -> Filter {
    Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(filter::ConfigType::TypedConfig(wkt::Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
                .into(),
            value: TcpProxy {
                stat_prefix: "test".into(),
                cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
                ..Default::default()
            }
            .encode_to_vec(),
        })),
    }
}

fn listener(name: &str, server_names: &[&str], cluster: &str) -> Listener {
    Listener {
        name: name.into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(0)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filter_chain_match: (!server_names.is_empty()).then(|| FilterChainMatch {
                server_names: server_names.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            }),
            filters: vec![tcp_proxy(cluster)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A plain TCP server answering `e:` + each read, closing when the client
/// does.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut out = b"e:".to_vec();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `bytes`, half-closes and reads until the gateway closes: the
/// client's address and the bytes it received.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (SocketAddr, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut got))
        .await
        .expect("the gateway closes in time");
    (local, got)
}

/// The value of the one series of `metric` whose labels contain every
/// `labels` pair; panics when there is not exactly one.
fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .collect();
    match found[..] {
        [] => None,
        [line] => line.rsplit(' ').next().and_then(|v| v.parse().ok()),
        _ => panic!("several {metric} series match {labels:?}: {found:?}"),
    }
}

/// Access log lines (JSON) written through tracing.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn access_lines(&self) -> Vec<serde_json::Value> {
        let out = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        out.lines()
            .filter(|l| l.contains(" access: "))
            .map(|l| serde_json::from_str(&l[l.find('{').unwrap()..]).unwrap())
            .collect()
    }
}

/// A gateway's listener manager reporting into its own telemetry (as the
/// ingress gateway `ingress-gw` of `istio-system`), with its drain switch.
fn gateway(
    access_log: bool,
) -> (
    Arc<ListenerManager>,
    Arc<Telemetry>,
    tokio::sync::watch::Sender<bool>,
) {
    let telemetry = Telemetry::new(TelemetryOptions {
        access_log,
        workload_uid: "Kubernetes//Pod/istio-system/ingress-gw-0".into(),
        workload_name: "ingress-gw".into(),
        namespace: "istio-system".into(),
        reporter: Reporter::Source,
        ..Default::default()
    });
    let clusters = ClusterManager::new(Default::default());
    let (drain, drain_rx) = tokio::sync::watch::channel(false);
    let gw = ListenerManager::with_connector(
        Deps::new(clusters.clone()),
        std::env::temp_dir().join("mesh-waypoint-gateway-telemetry-unused"),
        drain_rx,
        Connector::default(),
        Some(TcpObserver::new(telemetry.clone(), clusters)),
    );
    (gw, telemetry, drain)
}

/// A TLS ClientHello for `sni` (the handshake is never finished).
fn client_hello(sni: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(sni.to_string()).unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

// Current-thread runtime: every task runs on the thread whose default
// subscriber captures the access log.
#[tokio::test(flavor = "current_thread")]
async fn tcp_connections_are_counted_with_istio_labels_and_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (gw, telemetry, drain) = gateway(true);
    let upstream = echo().await;
    gw.tcp_upstreams().set_endpoints(ECHO, vec![upstream]);
    gw.tcp_upstreams().set_endpoints(EMPTY, vec![]);
    let plain = listener("0.0.0.0_9000", &[], ECHO);
    let down = listener("0.0.0.0_9001", &[], EMPTY);
    let passthrough = listener("0.0.0.0_9443", &["p.example.com"], ECHO);
    let errors = gw.apply(&[&plain, &down, &passthrough], |_| None);
    assert!(errors.is_empty(), "{errors:?}");

    // Plain TCP: 11 bytes up, the echo's answer down.
    let (client, got) = exchange(gw.local_addr("0.0.0.0_9000").unwrap(), b"hello world").await;
    assert_eq!(got, b"e:hello world");
    let labels = [
        ("reporter", "source"),
        ("source_workload", "ingress-gw"),
        ("source_workload_namespace", "istio-system"),
        ("destination_service", "echo.default.svc.cluster.local"),
        ("destination_service_name", "echo"),
        ("destination_service_namespace", "default"),
        ("destination_workload", "unknown"),
        ("request_protocol", "tcp"),
        ("response_flags", "-"),
        ("connection_security_policy", "none"),
    ];
    eventually_async("the connection closed in the metrics", LIMIT, || async {
        series(
            &telemetry.encode_metrics(),
            "istio_tcp_connections_closed_total",
            &labels,
        ) == Some(1.0)
    })
    .await;
    let text = telemetry.encode_metrics();
    for (metric, value) in [
        ("istio_tcp_connections_opened_total", 1.0),
        ("istio_tcp_received_bytes_total", 11.0),
        ("istio_tcp_sent_bytes_total", 13.0),
    ] {
        assert_eq!(
            series(&text, metric, &labels),
            Some(value),
            "{metric} in\n{text}"
        );
    }
    let line = captured
        .access_lines()
        .into_iter()
        .find(|l| l["downstream_remote_address"] == client.to_string())
        .unwrap_or_else(|| panic!("no access log line for {client}"));
    assert_eq!(line["protocol"], "tcp");
    assert_eq!(line["bytes_received"], 11);
    assert_eq!(line["bytes_sent"], 13);
    assert_eq!(line["upstream_host"], upstream.to_string());
    assert_eq!(line["upstream_cluster"], ECHO);
    assert_eq!(line["response_flags"], "-");
    assert!(line["start_time_ms"].as_u64().unwrap() > 0, "{line}");
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");

    // No endpoint: opened and closed with UH, nothing relayed.
    let (client, got) = exchange(gw.local_addr("0.0.0.0_9001").unwrap(), b"x").await;
    assert!(got.is_empty());
    let uh = [
        ("destination_service", "down.default.svc.cluster.local"),
        ("response_flags", "UH"),
    ];
    eventually_async("UH in the metrics", LIMIT, || async {
        series(
            &telemetry.encode_metrics(),
            "istio_tcp_connections_closed_total",
            &uh,
        ) == Some(1.0)
    })
    .await;
    let text = telemetry.encode_metrics();
    assert_eq!(
        series(&text, "istio_tcp_connections_opened_total", &uh),
        Some(1.0)
    );
    assert_eq!(
        series(&text, "istio_tcp_received_bytes_total", &uh),
        Some(0.0)
    );
    eventually_async("UH logged", LIMIT, || async {
        captured.access_lines().iter().any(|l| {
            l["downstream_remote_address"] == client.to_string() && l["response_flags"] == "UH"
        })
    })
    .await;

    // TLS passed through: the ClientHello relayed untouched, its SNI logged.
    let hello = client_hello("p.example.com");
    let (client, got) = exchange(gw.local_addr("0.0.0.0_9443").unwrap(), &hello).await;
    assert!(got.starts_with(b"e:"), "the echo answers the relayed hello");
    assert!(got.ends_with(&hello), "the hello arrives untouched");
    eventually_async("passthrough logged", LIMIT, || async {
        captured
            .access_lines()
            .iter()
            .any(|l| l["downstream_remote_address"] == client.to_string())
    })
    .await;
    let line = captured
        .access_lines()
        .into_iter()
        .find(|l| l["downstream_remote_address"] == client.to_string())
        .unwrap();
    assert_eq!(line["requested_server_name"], "p.example.com");
    assert_eq!(line["bytes_received"], hello.len());
    assert_eq!(line["bytes_sent"], got.len());
    let text = telemetry.encode_metrics();
    assert_eq!(
        series(&text, "istio_tcp_connections_closed_total", &labels),
        Some(2.0),
        "{text}"
    );

    // Off: connections are still counted, no more lines.
    telemetry.set_access_log(false);
    let before = captured.access_lines().len();
    exchange(gw.local_addr("0.0.0.0_9000").unwrap(), b"quiet").await;
    eventually_async("counted with the log off", LIMIT, || async {
        series(
            &telemetry.encode_metrics(),
            "istio_tcp_connections_closed_total",
            &labels,
        ) == Some(3.0)
    })
    .await;
    assert_eq!(captured.access_lines().len(), before);

    drain.send_replace(true);
    tokio::time::timeout(LIMIT, gw.finished()).await.unwrap();
}

/// A long `tcp_proxy` connection's bytes show at each scrape while it is
/// open (nothing closed yet), and the close adds only the rest: the totals
/// are exactly what moved.
#[tokio::test]
async fn bytes_of_an_open_tcp_connection_show_before_it_closes() {
    let (gw, telemetry, _drain) = gateway(false);
    gw.tcp_upstreams().set_endpoints(ECHO, vec![echo().await]);
    let plain = listener("0.0.0.0_9000", &[], ECHO);
    let errors = gw.apply(&[&plain], |_| None);
    assert!(errors.is_empty(), "{errors:?}");
    let labels = [
        ("reporter", "source"),
        ("destination_service", "echo.default.svc.cluster.local"),
    ];
    let now = |metric: &str| series(&telemetry.encode_metrics(), metric, &labels).unwrap_or(0.0);

    let mut s = TcpStream::connect(gw.local_addr("0.0.0.0_9000").unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    // Each round trip: 5 bytes up, "e:" + 5 bytes back.
    for round in 1..=3u32 {
        s.write_all(b"hello").await.unwrap();
        let mut got = 0;
        while got < 7 {
            got += tokio::time::timeout(LIMIT, s.read(&mut buf[got..]))
                .await
                .expect("the echo answers in time")
                .unwrap();
        }
        let want = f64::from(round);
        eventually_async("bytes counted while open", LIMIT, || async {
            let (received, sent) = (
                now("istio_tcp_received_bytes_total"),
                now("istio_tcp_sent_bytes_total"),
            );
            if received == 5.0 * want && sent == 7.0 * want {
                Ok(())
            } else {
                Err(format!("received {received}, sent {sent}"))
            }
        })
        .await;
        assert_eq!(now("istio_tcp_connections_closed_total"), 0.0);
    }
    // Closed: the totals are what moved, not counted twice.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut rest)).await;
    eventually_async("the connection closed in the metrics", LIMIT, || async {
        match now("istio_tcp_connections_closed_total") {
            1.0 => Ok(()),
            n => Err(format!("{n} closed")),
        }
    })
    .await;
    assert_eq!(now("istio_tcp_received_bytes_total"), 15.0);
    assert_eq!(now("istio_tcp_sent_bytes_total"), 21.0);
}
