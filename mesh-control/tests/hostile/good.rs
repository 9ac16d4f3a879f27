//! The good configuration every hostile case is loaded next to: the
//! state the source must keep serving when the hostile file arrives.
pub const GOOD_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio.io/dataplane-mode: ambient}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status:
  addresses: [{type: InternalIP, address: 172.18.0.2}]
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
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web, version: v1}
spec: {nodeName: node-1, serviceAccountName: web}
status: {podIP: 10.244.1.5}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web, subset: v1}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]}]
"#;
