//! Waypoints in the directory source: Gateway API Gateways of class
//! `istio-waypoint`, their pods, and services attached by label.
use mesh_control::{
    model::WaypointRef,
    source::{load_files, SourceConfig},
};

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: wp
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status:
  addresses: [{type: InternalIP, address: 172.18.0.2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Pod
metadata:
  name: wp-7d9
  namespace: shop
  labels: {gateway.networking.k8s.io/gateway-name: wp}
spec: {nodeName: node-1, serviceAccountName: wp}
status: {podIP: 10.244.1.9}
---
apiVersion: v1
kind: Pod
metadata:
  name: ingress-1
  namespace: shop
  labels: {gateway.networking.k8s.io/gateway-name: ingress}
spec: {nodeName: node-1}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: 8080}, {port: 81, appProtocol: grpc, name: x}]
---
apiVersion: v1
kind: Service
metadata: {name: wp, namespace: shop}
spec:
  clusterIP: 10.96.0.30
  selector: {gateway.networking.k8s.io/gateway-name: wp}
  ports: [{name: mesh, port: 15008}]
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
  labels: {istio.io/use-waypoint: none}
spec: {clusterIP: 10.96.0.21, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
  labels: {istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra}
spec: {clusterIP: 10.96.0.22, ports: [{port: 80}]}
"#;

fn load(text: &str) -> Result<mesh_control::source::Snapshot, Vec<String>> {
    load_files(&[("m.yaml".into(), text.into())], &SourceConfig::default())
        .map_err(|p| p.iter().map(ToString::to_string).collect())
}

#[test]
fn waypoints_their_pods_and_attachment() {
    let snapshot = load(MESH).unwrap();
    let state = &snapshot.state;
    assert_eq!(state.waypoints.keys().collect::<Vec<_>>(), ["shop/wp"]);
    assert_eq!(
        state.waypoints["shop/wp"].pods,
        ["Kubernetes//Pod/shop/wp-7d9"]
    );
    // Waypoint pods are not captured; other gateways' pods are ordinary.
    assert!(!state.workloads["Kubernetes//Pod/shop/wp-7d9"].mesh);
    assert!(state.workloads["Kubernetes//Pod/shop/ingress-1"].mesh);

    let svc = |name: &str| &state.services[&format!("shop/{name}.shop.svc.cluster.local")];
    let wp = |ns: &str, name: &str| WaypointRef {
        namespace: ns.into(),
        name: name.into(),
    };
    assert_eq!(svc("web").waypoint, Some(wp("shop", "wp")));
    assert_eq!(svc("db").waypoint, None);
    // The waypoint's own Service does not loop through it.
    assert_eq!(svc("wp").waypoint, None);
    assert_eq!(svc("api").waypoint, Some(wp("infra", "shared")));
    assert_eq!(
        svc("web").port_protocols,
        [(80, "http".to_string()), (81, "grpc".to_string())].into()
    );
    assert!(
        snapshot
            .warnings
            .iter()
            .any(|w| w.contains("Service shop/api") && w.contains("infra/shared")),
        "{:?}",
        snapshot.warnings
    );
    let (w, ip) = state.waypoint_address(&state.waypoints["shop/wp"]).unwrap();
    assert_eq!(
        (w.service_account.as_str(), ip.to_string().as_str()),
        ("wp", "10.244.1.9")
    );
}

#[test]
fn malformed_gateways_are_rejected_naming_the_field() {
    let bad = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec:
  listeners: [{name: mesh, port: 99999, protocol: HBONE}, {port: 15008}]
---
apiVersion: gateway.networking.k8s.io/v1alpha1
kind: Gateway
metadata: {name: old, namespace: shop}
spec: {gatewayClassName: istio-waypoint}
"#;
    let problems = load(bad).unwrap_err();
    assert_eq!(
        problems,
        [
            "m.yaml: Gateway shop/wp: spec.gatewayClassName: required field is missing",
            "m.yaml: Gateway shop/wp: spec.listeners[0].port: 99999 is not a port number (1-65535)",
            "m.yaml: Gateway shop/wp: spec.listeners[1].name: required field is missing",
            "m.yaml: Gateway shop/wp: spec.listeners[1].protocol: required field is missing",
            "m.yaml: Gateway shop/old: apiVersion: gateway.networking.k8s.io/v1alpha1 is not a Gateway version the mesh reads (use gateway.networking.k8s.io/v1 or v1beta1)",
        ]
    );
}
