//! YAML the source's unit tests share: the smallest mesh a pod can live in.

/// Namespace `default` in ambient mode and node `node-1` at 10.0.0.1, as
/// one multi-document string that ends before a `---`.
pub const AMBIENT_NODE: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
";
