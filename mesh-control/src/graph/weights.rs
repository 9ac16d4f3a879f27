//! The configured split of a service's traffic: for a service → workload
//! edge, the weight of the destination (of the VirtualService's last,
//! match-less HTTP route for the service's host) whose DestinationRule
//! subset selects the workload.
use std::collections::BTreeMap;

use crate::model::{MeshState, Service, VirtualService, Workload};

/// `host` as written in `namespace`, fully qualified as Istio does: a
/// short name (no dot) is `<host>.<namespace>.svc.<domain>`; anything
/// with a dot is taken as written.
pub fn fqdn(host: &str, namespace: &str, domain: &str) -> String {
    if host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{domain}")
    }
}

/// The VirtualService that routes mesh traffic for `service` (bound to no
/// gateway, or to `mesh`), the first in configuration order.
fn virtual_service<'a>(state: &'a MeshState, service: &Service) -> Option<&'a VirtualService> {
    let domain = state.cluster_domain();
    state.virtual_services.iter().find(|vs| {
        let for_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
        for_mesh
            && vs
                .hosts
                .iter()
                .any(|h| fqdn(h, &vs.namespace, domain) == service.hostname)
    })
}

/// Labels of `subset` of the DestinationRule for `hostname`, preferring a
/// rule in `namespace`.
fn subset_labels<'a>(
    state: &'a MeshState,
    hostname: &str,
    namespace: &str,
    subset: &str,
) -> Option<&'a BTreeMap<String, String>> {
    let domain = state.cluster_domain();
    let mut rules: Vec<_> = state
        .destination_rules
        .iter()
        .filter(|dr| fqdn(&dr.host, &dr.namespace, domain) == hostname)
        .collect();
    rules.sort_by_key(|dr| dr.namespace != namespace);
    rules
        .into_iter()
        .find_map(|dr| dr.subsets.iter().find(|s| s.name == subset))
        .map(|s| &s.labels)
}

/// The percentage of `service`'s default-route traffic configured for
/// `workload`; `None` when no VirtualService applies, its last route has
/// matches, or it has a single destination without a weight.
pub fn configured_weight(state: &MeshState, service: &Service, workload: &Workload) -> Option<u32> {
    let vs = virtual_service(state, service)?;
    let route = vs.http.last().filter(|r| r.matches.is_empty())?;
    if route.route.len() == 1 && route.route[0].weight.is_none() {
        return None;
    }
    let domain = state.cluster_domain();
    route.route.iter().find_map(|d| {
        if fqdn(&d.destination.host, &vs.namespace, domain) != service.hostname {
            return None;
        }
        let selects = match &d.destination.subset {
            None => true,
            Some(subset) => subset_labels(state, &service.hostname, &vs.namespace, subset)
                .is_some_and(|labels| {
                    labels
                        .iter()
                        .all(|(k, v)| workload.labels.get(k) == Some(v))
                }),
        };
        selects.then(|| {
            d.weight
                .unwrap_or(if route.route.len() == 1 { 100 } else { 0 })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{self, SourceConfig};

    const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.1.12
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews.default.svc.cluster.local, subset: v2}, weight: 20}
"#;

    fn workload(version: &str) -> Workload {
        Workload {
            uid: format!("Kubernetes//Pod/default/reviews-{version}"),
            name: format!("reviews-{version}"),
            namespace: "default".into(),
            service_account: "default".into(),
            ips: vec![],
            node: "n".into(),
            labels: [("app", "reviews"), ("version", version)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mesh: true,
            services: BTreeMap::new(),
            probe_ports: vec![],
        }
    }

    #[test]
    fn canary_weights_by_subset() {
        let files = [("mesh.yaml".to_string(), YAML.to_string())];
        let state = source::load_files(&files, &SourceConfig::default())
            .expect("valid YAML")
            .state;
        let svc = state
            .services
            .values()
            .find(|s| s.name == "reviews")
            .expect("reviews service");
        assert_eq!(configured_weight(&state, svc, &workload("v1")), Some(80));
        assert_eq!(configured_weight(&state, svc, &workload("v2")), Some(20));
        // v3 is only reached through a match route.
        assert_eq!(configured_weight(&state, svc, &workload("v3")), None);
    }

    #[test]
    fn hosts_are_qualified() {
        assert_eq!(
            fqdn("reviews", "default", "cluster.local"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(fqdn("api.example.com", "default", "c.l"), "api.example.com");
    }
}
