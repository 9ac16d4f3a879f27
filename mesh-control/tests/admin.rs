//! The admin and readiness endpoints of a whole in-process control plane
//! (real listeners on 127.0.0.1:0), read over plain HTTP/1.1 while a real
//! `mesh-xds` client holds a Delta ADS stream. Every wait is bounded.
use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use mesh_control::app::{logging::LogControl, App, ControlConfig};
use mesh_testkit::eventually_async;
use mesh_xds::{Backoff, XdsClient, XdsClientConfig, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::oneshot,
};
use tracing_subscriber::prelude::*;

const TOPOLOGY: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels: {istio.io/dataplane-mode: ambient}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {nodeName: node-1, serviceAccountName: a}\nstatus: {podIP: 10.244.1.2}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.10, selector: {app: a}, ports: [{port: 80, targetPort: 8080}]}\n";

const SECURITY: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-80, namespace: default}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {ports: ['80']}}]}]\n";

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// One HTTP/1.1 request with `Connection: close`; (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    bounded(&format!("{method} {path}"), async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        tcp.read_to_string(&mut resp).await.unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    })
    .await
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

struct Running {
    app_addrs: (SocketAddr, SocketAddr, SocketAddr),
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
    config_dir: std::path::PathBuf,
}

impl Running {
    fn xds(&self) -> SocketAddr {
        self.app_addrs.0
    }
    fn admin(&self) -> SocketAddr {
        self.app_addrs.1
    }
    fn ready(&self) -> SocketAddr {
        self.app_addrs.2
    }
}

async fn start(log: Option<LogControl>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, ca_dir) = (dir.path().join("config"), dir.path().join("ca"));
    std::fs::create_dir(&config_dir).unwrap();
    write(&config_dir, "00-topology.yaml", TOPOLOGY);
    write(&config_dir, "10-security.yaml", SECURITY);
    let mut config = ControlConfig::for_dirs(&config_dir, &ca_dir);
    config.reload_interval = Duration::from_millis(20);
    let mut app = App::build(config).await.unwrap();
    app.log = log.map(Arc::new);
    let app_addrs = (app.xds_addr(), app.admin_addr(), app.ready_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Running {
        app_addrs,
        stop,
        task,
        _dir: dir,
        config_dir,
    }
}

fn agent(xds: SocketAddr, node: &str) -> XdsClientConfig {
    let mut config = XdsClientConfig::new(format!("http://{xds}"), node);
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    config
}

/// Polls `/debug/syncz` until `f` holds; returns that document.
async fn syncz_until(admin: SocketAddr, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually_async(what, Duration::from_secs(20), || async {
        let doc = get_json(admin, "/debug/syncz").await;
        if f(&doc) {
            Ok(doc)
        } else {
            Err(doc)
        }
    })
    .await
}

fn all_synced(doc: &Value, node: &str) -> bool {
    doc["proxies"].as_array().unwrap().iter().any(|p| {
        p["node_id"] == node
            && p["types"].as_object().unwrap().len() == 2
            && p["types"]
                .as_object()
                .unwrap()
                .values()
                .all(|t| t["status"] == "SYNCED")
    })
}

#[tokio::test]
async fn syncz_config_dump_and_readiness() {
    let running = start(None).await;
    assert_eq!(
        get_json(running.ready(), "/healthz/ready").await["ready"],
        true
    );
    assert_eq!(
        get_json(running.admin(), "/healthz/ready").await["ready"],
        true
    );
    // The public readiness port serves nothing else.
    assert_eq!(http(running.ready(), "GET", "/config_dump").await.0, 404);

    let empty = get_json(running.admin(), "/debug/syncz").await;
    assert_eq!(empty["server_version"], "1");
    assert_eq!(empty["proxies"], serde_json::json!([]));

    let (client, mut snapshots) = XdsClient::spawn(agent(running.xds(), "agent~node-1"));
    bounded(
        "snapshot",
        snapshots.wait_for(|s| s.workload("Kubernetes//Pod/default/a").is_some()),
    )
    .await
    .unwrap();
    let doc = syncz_until(running.admin(), "both types SYNCED", |d| {
        all_synced(d, "agent~node-1")
    })
    .await;
    let proxy = &doc["proxies"][0];
    assert!(proxy["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(proxy["stream_id"].as_u64().unwrap() >= 1);
    assert!(proxy["connected_at_unix"].as_u64().unwrap() > 1_600_000_000);
    let address = &proxy["types"][ADDRESS_TYPE_URL];
    assert_eq!(address["last_sent_version"], "1");
    assert_eq!(address["resources"], 2, "pod a and service a");
    assert_eq!(address["acked"], true);
    assert_eq!(address["last_nack"], Value::Null);
    assert_eq!(
        proxy["types"][AUTHORIZATION_TYPE_URL]["resources"], 2,
        "the converted STRICT policy and deny-80"
    );

    // A change that touches only Address: Authorization has nothing new to
    // send and still counts as SYNCED at the new server version.
    write(
        &running.config_dir,
        "20-b.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.3}\n",
    );
    let doc = syncz_until(running.admin(), "SYNCED at version 2", |d| {
        d["server_version"] == "2" && all_synced(d, "agent~node-1")
    })
    .await;
    let types = &doc["proxies"][0]["types"];
    assert_eq!(types[ADDRESS_TYPE_URL]["last_sent_version"], "2");
    assert_eq!(types[ADDRESS_TYPE_URL]["resources"], 3);
    assert_eq!(types[AUTHORIZATION_TYPE_URL]["last_sent_version"], "1");

    let dump = get_json(running.admin(), "/config_dump").await;
    assert_eq!(dump["server_version"], "2");
    assert_eq!(dump["trust_domain"], "cluster.local");
    assert_eq!(dump["last_error"], Value::Null);
    let a = dump["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "a")
        .unwrap();
    assert_eq!(a["identity"], "spiffe://cluster.local/ns/default/sa/a");
    assert_eq!(a["ips"], serde_json::json!(["10.244.1.2"]));
    assert_eq!(a["mesh"], true);
    assert_eq!(
        dump["services"][0]["vips"],
        serde_json::json!(["10.96.0.10"])
    );
    assert_eq!(dump["nodes"][0]["address"], "10.0.0.1");
    assert_eq!(dump["peer_authentications"][0]["mode"], "STRICT");
    let addresses = dump["xds"][ADDRESS_TYPE_URL].as_array().unwrap();
    let served = addresses
        .iter()
        .find(|r| r["name"] == "Kubernetes//Pod/default/a")
        .unwrap();
    assert_eq!(served["resource"]["workload"]["tunnel_protocol"], "HBONE");
    assert_eq!(
        served["resource"]["workload"]["authorization_policies"],
        serde_json::json!(["istio-system/istio_converted_static_strict"])
    );
    // The versions in the dump are the ones the client was sent.
    let snap = snapshots.borrow().clone();
    assert_eq!(
        served["version"],
        snap.get(ADDRESS_TYPE_URL, "Kubernetes//Pod/default/a")
            .unwrap()
            .version
    );
    assert_eq!(
        dump["xds"][AUTHORIZATION_TYPE_URL][0]["resource"]["action"],
        "DENY"
    );
    // The raw Istio documents, as written, for the analyzer.
    let raw = dump["resources"].as_array().unwrap();
    let policy = raw
        .iter()
        .find(|r| r["kind"] == "AuthorizationPolicy")
        .unwrap();
    assert_eq!(policy["apiVersion"], "security.istio.io/v1");
    assert_eq!(policy["metadata"]["name"], "deny-80");
    assert_eq!(
        policy["spec"]["rules"][0]["to"][0]["operation"]["ports"][0],
        "80"
    );
    assert_eq!(dump["resource_files"][0]["file"], "10-security.yaml");

    // Errors name what is wrong.
    assert_eq!(http(running.admin(), "POST", "/debug/syncz").await.0, 405);
    let (status, body) = http(running.admin(), "GET", "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("/debug/syncz"), "{body}");
    assert_eq!(http(running.admin(), "GET", "/logging").await.0, 501);

    bounded("client stop", client.stop()).await;
    syncz_until(running.admin(), "stream gone", |d| {
        d["proxies"].as_array().unwrap().is_empty()
    })
    .await;
    let _ = running.stop.send(());
    bounded("shutdown", running.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn logging_changes_the_filter_at_runtime() {
    let (layer, control) = LogControl::new("info").unwrap();
    // Kept alive (not installed) so the reload handle has a target.
    let _subscriber = tracing_subscriber::registry().with(layer);
    let running = start(Some(control)).await;
    let admin = running.admin();
    assert_eq!(http(admin, "GET", "/logging").await, (200, "info\n".into()));
    assert_eq!(
        http(admin, "POST", "/logging?level=debug").await,
        (200, "debug\n".into())
    );
    assert_eq!(
        http(admin, "POST", "/logging?mesh_control::server=trace").await,
        (200, "debug,mesh_control::server=trace\n".into())
    );
    let (status, body) = http(admin, "POST", "/logging?level=loud").await;
    assert_eq!(status, 400);
    assert!(body.contains("bad level \"loud\" for level"), "{body}");
    assert_eq!(http(admin, "POST", "/logging").await.0, 400);
    assert_eq!(
        http(admin, "GET", "/logging").await.1,
        "debug,mesh_control::server=trace\n"
    );
    let _ = running.stop.send(());
    bounded("shutdown", running.task).await.unwrap().unwrap();
}

#[tokio::test]
async fn quitquitquit_ends_streams_and_returns_ok() {
    let running = start(None).await;
    let (client, mut snapshots) = XdsClient::spawn(agent(running.xds(), "agent~node-1"));
    bounded("connected", snapshots.wait_for(|s| s.connected))
        .await
        .unwrap();
    assert_eq!(http(running.admin(), "GET", "/quitquitquit").await.0, 405);
    assert_eq!(
        http(running.admin(), "POST", "/quitquitquit").await,
        (200, "OK\n".into())
    );
    // run() returns Ok (the binary exits 0) without the shutdown future.
    bounded("run returns", running.task).await.unwrap().unwrap();
    bounded("client sees the end", snapshots.wait_for(|s| !s.connected))
        .await
        .unwrap();
    assert!(TcpStream::connect(running.app_addrs.1).await.is_err());
    bounded("client stop", client.stop()).await;
    drop(running.stop);
}
