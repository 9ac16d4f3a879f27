//! The waypoint's route matcher: virtual host selection by authority and
//! route lookup (path, headers, query parameters, method) over a route
//! table built the way production builds it — Istio YAML through the
//! control plane's translation, then the waypoint's RDS translation.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, OnceLock},
};

use http::Method;
use mesh_control::source::{load_files, SourceConfig};
use mesh_waypoint::config::{matcher::RequestView, route_config, RouteTable};

use crate::lines;

/// A waypoint in front of `web`, with a VirtualService using every kind of
/// match the translation supports.
pub const MESH_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  clusterIP: 10.96.0.21
  selector: {app: api}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match:
    - uri: {exact: /exact}
      method: {exact: POST}
    - uri: {prefix: /api/}
      headers:
        x-user: {regex: "adm[a-z]+"}
        x-env: {prefix: prod}
      queryParams:
        debug: {exact: "1"}
    route: [{destination: {host: web, subset: v2}}]
  - match:
    - uri: {regex: "/items/[0-9]{1,6}(/.*)?"}
      ignoreUriCase: true
    - authority: {prefix: "web."}
      uri: {prefix: /static}
    - headers:
        x-absent: {}
      withoutHeaders:
        x-forbidden: {exact: yes}
    rewrite: {uri: /v2/items}
    route:
    - {destination: {host: web, subset: v1}, weight: 70}
    - {destination: {host: web, subset: v2}, weight: 30}
  - route: [{destination: {host: web, subset: v1}}]
"#;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let snapshot = load_files(
            &[("mesh.yaml".into(), MESH_YAML.into())],
            &SourceConfig::default(),
        )
        .unwrap_or_else(|problems| panic!("route_match fixture rejected: {problems:?}"));
        let envoy = mesh_control::translate::waypoint::translate(&snapshot.state, "istio-system");
        let rc = envoy
            .routes
            .values()
            .next()
            .expect("the fixture has a waypoint");
        route_config::translate(rc).expect("the fixture's routes translate")
    })
}

/// Input: line 1 the method, line 2 the authority, line 3 the path (with
/// query), then header lines.
pub fn route_match(data: &[u8]) {
    let lines = lines::split(data);
    let field = |i: usize| lines.get(i).map_or("", String::as_str);
    let Ok(method) = Method::from_bytes(field(0).as_bytes()) else {
        return;
    };
    let headers = lines::headers(lines.iter().skip(3));
    let view = RequestView {
        method: &method,
        authority: field(1),
        path: field(2),
        scheme: "http",
        headers: &headers,
    };
    let _ = (view.path_only(), view.query(), view.query_param("debug"));
    let Some(vhost) = table().select(field(1)) else {
        return;
    };
    let source = Some(IpAddr::V4(Ipv4Addr::new(10, 244, 1, 7)));
    let first = vhost.find(&view, source);
    // Matching has no hidden state: the same request finds the same route.
    let again = vhost.find(&view, source);
    assert_eq!(first.map(Arc::as_ptr), again.map(Arc::as_ptr));
}
