//! The configuration `bench scale` pushes: Kubernetes and Istio YAML for
//! the control plane's directory source. Services spread over namespaces
//! (the first namespace is `default`, whose services go through the
//! waypoint and carry a VirtualService and a DestinationRule each), pods
//! spread over services and over 100 nodes (the bench's agents run the
//! first few), an ALLOW AuthorizationPolicy per service and a STRICT
//! PeerAuthentication per namespace plus a mesh-wide one.
//!
//! The churn files hold what the timed changes add, one resource more per
//! change: pods of service 0 (seen by every agent and, as endpoints, by
//! the waypoint) and AuthorizationPolicies (seen by every agent).
use std::fmt::Write as _;

/// Services per namespace.
const SERVICES_PER_NAMESPACE: usize = 50;
/// Documents per pod file.
const PODS_PER_FILE: usize = 1_000;
/// Nodes the pods are spread over (`node1` … `node100`).
pub const NODES: usize = 100;
/// The waypoint (a `Gateway` of class `istio-waypoint` in `default`).
pub const WAYPOINT: &str = "waypoint";
/// The file the pod changes rewrite.
pub const CHURN_PODS: &str = "90-churn-pods.yaml";
/// The file the policy changes rewrite.
pub const CHURN_POLICIES: &str = "91-churn-policies.yaml";

/// What to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    pub workloads: usize,
    pub services: usize,
    /// Nodes that exist in the cluster topology already (`node1` …).
    pub agent_nodes: usize,
}

impl Shape {
    fn namespaces(&self) -> usize {
        self.services.div_ceil(SERVICES_PER_NAMESPACE).max(1)
    }

    fn namespace(&self, service: usize) -> String {
        match service % self.namespaces() {
            0 => "default".into(),
            n => format!("ns{n}"),
        }
    }

    /// AuthorizationPolicies generated (one per service).
    pub fn policies(&self) -> usize {
        self.services
    }
}

/// `(file name, YAML)` of the whole configuration.
pub fn files(shape: &Shape) -> Vec<(String, String)> {
    let mut out = vec![
        ("10-namespaces.yaml".to_string(), namespaces(shape)),
        ("11-nodes.yaml".to_string(), nodes(shape)),
        ("20-services.yaml".to_string(), services(shape)),
        ("40-authorization.yaml".to_string(), authorization(shape)),
        ("41-peer-authentication.yaml".to_string(), peer_auth(shape)),
        ("50-routing.yaml".to_string(), routing(shape)),
    ];
    let mut pods = String::new();
    for j in 0..shape.workloads {
        pods += &pod(
            &format!("pod{j}"),
            &shape.namespace(j % shape.services.max(1)),
            j % shape.services.max(1),
            j % NODES + 1,
            pod_ip(j),
        );
        if (j + 1) % PODS_PER_FILE == 0 || j + 1 == shape.workloads {
            out.push((
                format!("30-pods-{:03}.yaml", j / PODS_PER_FILE),
                std::mem::take(&mut pods),
            ));
        }
    }
    out
}

fn doc(out: &mut String, yaml: &str) {
    out.push_str("---\n");
    out.push_str(yaml);
}

fn namespaces(shape: &Shape) -> String {
    let mut out = String::new();
    doc(
        &mut out,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n",
    );
    for n in 1..shape.namespaces() {
        doc(&mut out, &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{n}\n  labels:\n    istio.io/dataplane-mode: ambient\n"));
    }
    out
}

fn nodes(shape: &Shape) -> String {
    let mut out = String::new();
    for n in shape.agent_nodes + 1..=NODES {
        doc(&mut out, &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: node{n}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 10.1.0.{n}\n"));
    }
    out
}

fn services(shape: &Shape) -> String {
    let mut out = String::new();
    for i in 0..shape.services {
        let ns = shape.namespace(i);
        let waypoint = if ns == "default" {
            format!("  labels:\n    istio.io/use-waypoint: {WAYPOINT}\n")
        } else {
            String::new()
        };
        doc(&mut out, &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc{i}\n  namespace: {ns}\n{waypoint}spec:\n  clusterIP: 10.100.{}.{}\n  selector:\n    app: svc{i}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n",
            i / 250,
            i % 250 + 1
        ));
    }
    out
}

fn pod_ip(j: usize) -> String {
    format!("10.{}.{}.{}", 128 + j / 65_536, (j / 256) % 256, j % 256)
}

fn pod(name: &str, ns: &str, service: usize, node: usize, ip: String) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: svc{service}\n    version: v1\nspec:\n  serviceAccountName: sa{service}\n  nodeName: node{node}\nstatus:\n  podIP: {ip}\n"
    )
}

fn allow_policy(name: &str, ns: &str, service: usize, from: &str, port: usize) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels:\n      app: svc{service}\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"{from}\"]\n    to:\n    - operation:\n        ports: [\"{port}\"]\n"
    )
}

fn authorization(shape: &Shape) -> String {
    let mut out = String::new();
    for i in 0..shape.services {
        let caller = (i + 1) % shape.services;
        let from = format!("cluster.local/ns/{}/sa/sa{caller}", shape.namespace(caller));
        out += &allow_policy(
            &format!("allow-svc{i}"),
            &shape.namespace(i),
            i,
            &from,
            8080,
        );
    }
    out
}

fn peer_auth(shape: &Shape) -> String {
    let mut out = String::new();
    doc(&mut out, "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n");
    for i in 0..shape.namespaces() {
        let ns = shape.namespace(i);
        doc(&mut out, &format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: strict\n  namespace: {ns}\nspec:\n  mtls:\n    mode: STRICT\n"));
    }
    out
}

/// A VirtualService (timeout, retries) and a DestinationRule (load
/// balancing, outlier detection) per waypoint service.
fn routing(shape: &Shape) -> String {
    let mut out = String::new();
    for i in (0..shape.services).filter(|i| shape.namespace(*i) == "default") {
        let host = format!("svc{i}.default.svc.cluster.local");
        let _ = write!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: svc{i}\n  namespace: default\nspec:\n  hosts: [\"{host}\"]\n  http:\n  - match:\n    - uri:\n        prefix: /api\n    route:\n    - destination:\n        host: {host}\n    timeout: 3s\n    retries:\n      attempts: 2\n      perTryTimeout: 1s\n  - route:\n    - destination:\n        host: {host}\n"
        );
        let _ = write!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: svc{i}\n  namespace: default\nspec:\n  host: {host}\n  trafficPolicy:\n    loadBalancer:\n      simple: LEAST_REQUEST\n    outlierDetection:\n      consecutive5xxErrors: 5\n      interval: 10s\n      baseEjectionTime: 30s\n"
        );
    }
    out
}

/// Pods `churn0` … `churn{count-1}` of service 0 (namespace `default`).
pub fn churn_pods(count: usize) -> String {
    (0..count)
        .map(|k| {
            pod(
                &format!("churn{k}"),
                "default",
                0,
                k % NODES + 1,
                format!("10.200.{}.{}", k / 256, k % 256),
            )
        })
        .collect()
}

/// AuthorizationPolicies `churn0` … `churn{count-1}` (service 1's pods).
pub fn churn_policies(shape: &Shape, count: usize) -> String {
    let service = 1 % shape.services.max(1);
    let ns = shape.namespace(service);
    (0..count)
        .map(|k| {
            allow_policy(
                &format!("churn{k}"),
                &ns,
                service,
                "cluster.local/ns/default/sa/sa0",
                9_000 + k,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_placement() {
        let shape = Shape {
            workloads: 2_500,
            services: 120,
            agent_nodes: 4,
        };
        let all = files(&shape);
        let count = |kind: &str| {
            all.iter()
                .map(|(_, y)| y.matches(&format!("\nkind: {kind}\n")).count())
                .sum::<usize>()
        };
        assert_eq!(count("Pod"), 2_500);
        assert_eq!(count("Service"), 120);
        assert_eq!(count("AuthorizationPolicy"), 120);
        // 3 namespaces: default (services 0, 3, …: 40 of them) and ns1, ns2.
        assert_eq!(count("VirtualService"), 40);
        assert_eq!(count("Node"), NODES - 4);
        assert_eq!(
            all.iter().filter(|(f, _)| f.starts_with("30-pods")).count(),
            3
        );
        assert!(all
            .iter()
            .all(|(_, y)| serde_yaml::Deserializer::from_str(y).count() > 0));
        assert_eq!(churn_pods(3).matches("kind: Pod").count(), 3);
        assert_eq!(pod_ip(65_537), "10.129.0.1");
    }
}
