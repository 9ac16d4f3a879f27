//! The YAML sets the Kubernetes-source tests load, the same files into
//! the fake API server and into a directory for the directory source.
use std::path::Path;

/// What the mesh-control seed set lacks: a ServiceEntry, an Istio Gateway,
/// a selector-less Service with its EndpointSlice,
/// a waypoint in use, pods `a` (node-1) / `b` (node-2) with service
/// accounts of their own names for the CA rules, and a namespace `flip`
/// outside the mesh whose label the tests flip.
pub const EXTRA: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext, namespace: default}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: v1
kind: Service
metadata:
  name: details
  namespace: default
  labels: {istio.io/use-waypoint: waypoint}
spec:
  clusterIP: 10.96.0.13
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {serviceAccountName: a, nodeName: node-1}
status: {podIP: 10.244.1.30}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: b}}
spec: {serviceAccountName: b, nodeName: node-2}
status: {podIP: 10.244.2.30}
---
apiVersion: v1
kind: Service
metadata: {name: legacy-db, namespace: default}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: sql, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-db-abc, namespace: default, labels: {kubernetes.io/service-name: legacy-db}}
addressType: IPv4
ports: [{name: sql, port: 15432, protocol: TCP}]
endpoints:
- addresses: [10.244.1.30]
  targetRef: {kind: Pod, name: a, namespace: default}
---
apiVersion: v1
kind: Namespace
metadata: {name: flip}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: flip}
spec: {serviceAccountName: app, nodeName: node-2}
status: {podIP: 10.244.2.50}
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-0, namespace: default, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {serviceAccountName: waypoint, nodeName: node-1}
status: {podIP: 10.244.1.40}
"#;

/// The `*.yaml`/`*.yml` files of `dir` (hidden files skipped, as the
/// directory source does), relative to this crate.
pub fn yaml_files(dir: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            files.push((
                name.clone(),
                std::fs::read_to_string(dir.join(&name)).unwrap(),
            ));
        }
    }
    files
}

/// mesh-control's own seed set (the YAML its directory tests load) plus
/// [`EXTRA`].
pub fn seed_set() -> Vec<(String, String)> {
    let mut files = yaml_files("../mesh-control/tests/data/mesh");
    files.push(("70-extra.yaml".into(), EXTRA.into()));
    files
}

/// Where the demo's pods run: what `cargo xtask demo` writes from its
/// topology (here without the network namespaces), every service through
/// the waypoint.
pub const DEMO_TOPOLOGY: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-0, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {serviceAccountName: waypoint, nodeName: node-1}
status: {podIP: 10.244.1.40}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: productpage-v1, labels: {app: productpage, version: v1}}, spec: {serviceAccountName: bookinfo-productpage, nodeName: node-1}, status: {podIP: 10.244.1.10}}
- {apiVersion: v1, kind: Pod, metadata: {name: details-v1, labels: {app: details, version: v1}}, spec: {serviceAccountName: bookinfo-details, nodeName: node-1}, status: {podIP: 10.244.1.11}}
- {apiVersion: v1, kind: Pod, metadata: {name: reviews-v1, labels: {app: reviews, version: v1}}, spec: {serviceAccountName: bookinfo-reviews, nodeName: node-1}, status: {podIP: 10.244.1.12}}
- {apiVersion: v1, kind: Pod, metadata: {name: reviews-v2, labels: {app: reviews, version: v2}}, spec: {serviceAccountName: bookinfo-reviews, nodeName: node-2}, status: {podIP: 10.244.2.12}}
- {apiVersion: v1, kind: Pod, metadata: {name: reviews-v3, labels: {app: reviews, version: v3}}, spec: {serviceAccountName: bookinfo-reviews, nodeName: node-2}, status: {podIP: 10.244.2.13}}
- {apiVersion: v1, kind: Pod, metadata: {name: ratings-v1, labels: {app: ratings, version: v1}}, spec: {serviceAccountName: bookinfo-ratings, nodeName: node-2}, status: {podIP: 10.244.2.14}}
"#;

/// The demo's bookinfo YAML (`xtask/lab/demo/bookinfo`) on [`DEMO_TOPOLOGY`].
pub fn demo_set() -> Vec<(String, String)> {
    let mut files = yaml_files("../xtask/lab/demo/bookinfo");
    files.push(("00-topology.yaml".into(), DEMO_TOPOLOGY.into()));
    files
}

/// Writes `files` into `dir`; returns them sorted by name.
pub fn write_config(dir: &Path, mut files: Vec<(String, String)>) -> Vec<(String, String)> {
    files.sort();
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    files
}
