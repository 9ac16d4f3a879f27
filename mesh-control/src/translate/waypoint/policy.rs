//! Which DestinationRule applies to a service, and the traffic-policy
//! settings in force for one of its clusters (port, subset), as istiod
//! computes them: a subset's `trafficPolicy` replaces the top-level
//! fields it sets (load balancer, connection pool, outlier detection,
//! TLS; port-level entries by port), then `portLevelSettings` for the
//! cluster's port replace the settings wholesale.
use crate::model::{
    routing::{PolicySettings, Subset, TrafficPolicy},
    DestinationRule, Service,
};

use super::Cx;

/// The namespace whose view of DestinationRules `svc`'s clusters take:
/// that of the waypoint it is bound to (the proxy that uses them, as a
/// sidecar's namespace is in Istio), else the service's own.
pub fn viewer_namespace(svc: &Service) -> &str {
    svc.waypoint
        .as_ref()
        .map_or(svc.namespace.as_str(), |w| w.namespace.as_str())
}

/// The DestinationRule for `svc`'s clusters, as seen from
/// [`viewer_namespace`].
pub fn destination_rule<'s>(cx: &Cx<'s>, svc: &Service) -> Option<&'s DestinationRule> {
    destination_rule_seen_from(cx, svc, viewer_namespace(svc))
}

/// The DestinationRule a proxy in namespace `viewer` applies to `svc`.
/// Only rules exported to `viewer` count (`exportTo`), looked up as
/// istiod looks them up: those of `viewer` first, then those of the
/// service's namespace, then those of the root namespace; a rule in any
/// other namespace applies to its own proxies only. Within each, the first (file
/// order) whose host names `svc` exactly, else the first whose wildcard
/// host (`*.shop.svc...`) covers it. Rules with a `workloadSelector`
/// apply to the selected sidecars only, never to a waypoint.
pub fn destination_rule_seen_from<'s>(
    cx: &Cx<'s>,
    svc: &Service,
    viewer: &str,
) -> Option<&'s DestinationRule> {
    let visible = |dr: &&DestinationRule| dr.workload_selector.is_none() && dr.exported_to(viewer);
    let tiers = [viewer, svc.namespace.as_str(), cx.root_namespace];
    let in_tier = |i: usize, dr: &DestinationRule| dr.namespace == tiers[i];
    (0..tiers.len()).find_map(|i| {
        let rules = || {
            cx.state
                .destination_rules
                .iter()
                .filter(visible)
                .filter(move |dr| in_tier(i, dr))
        };
        rules()
            .find(|dr| cx.fqdn(&dr.host, &dr.namespace) == svc.hostname)
            .or_else(|| rules().find(|dr| wildcard_covers(&dr.host, &svc.hostname)))
    })
}

/// True when `host` is a wildcard (`*.shop.svc.cluster.local`) covering
/// `hostname`.
pub fn wildcard_covers(host: &str, hostname: &str) -> bool {
    host.strip_prefix('*')
        .is_some_and(|suffix| hostname.ends_with(suffix))
}

/// Subset `name` of `dr`.
pub fn subset<'d>(dr: &'d DestinationRule, name: &str) -> Option<&'d Subset> {
    dr.subsets.iter().find(|s| s.name == name)
}

/// The settings for the cluster of `port` (and `subset`) under `dr`.
pub fn settings(
    dr: Option<&DestinationRule>,
    subset_name: Option<&str>,
    port: u16,
) -> PolicySettings {
    let Some(dr) = dr else {
        return PolicySettings::default();
    };
    let top = dr.traffic_policy.clone().unwrap_or_default();
    let merged = match subset_name
        .and_then(|n| subset(dr, n))
        .and_then(|s| s.traffic_policy.as_ref())
    {
        Some(sub) => merge(top, sub),
        None => top,
    };
    merged
        .port_level
        .iter()
        .find(|(p, _)| *p == port)
        .map_or(merged.settings.clone(), |(_, s)| s.clone())
}

fn merge(mut top: TrafficPolicy, sub: &TrafficPolicy) -> TrafficPolicy {
    let s = &sub.settings;
    if s.load_balancer.is_some() {
        top.settings.load_balancer.clone_from(&s.load_balancer);
    }
    if s.connection_pool.is_some() {
        top.settings.connection_pool.clone_from(&s.connection_pool);
    }
    if s.outlier_detection.is_some() {
        top.settings
            .outlier_detection
            .clone_from(&s.outlier_detection);
    }
    if s.tls.is_some() {
        top.settings.tls.clone_from(&s.tls);
    }
    for (port, settings) in &sub.port_level {
        top.port_level.retain(|(p, _)| p != port);
        top.port_level.push((*port, settings.clone()));
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::{LoadBalancer, OutlierDetection, SimpleLb};

    fn lb(simple: SimpleLb) -> Option<LoadBalancer> {
        Some(LoadBalancer {
            simple: Some(simple),
            ..Default::default()
        })
    }

    fn dr() -> DestinationRule {
        let top = TrafficPolicy {
            settings: PolicySettings {
                load_balancer: lb(SimpleLb::Random),
                outlier_detection: Some(OutlierDetection {
                    consecutive_5xx_errors: Some(7),
                    ..Default::default()
                }),
                ..Default::default()
            },
            port_level: vec![(
                9090,
                PolicySettings {
                    load_balancer: lb(SimpleLb::LeastRequest),
                    ..Default::default()
                },
            )],
            unknown: vec![],
        };
        DestinationRule {
            name: "r".into(),
            namespace: "shop".into(),
            file: "f".into(),
            host: "reviews".into(),
            traffic_policy: Some(top),
            subsets: vec![Subset {
                name: "v2".into(),
                labels: Default::default(),
                traffic_policy: Some(TrafficPolicy {
                    settings: PolicySettings {
                        load_balancer: lb(SimpleLb::RoundRobin),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            }],
            export_to: vec![],
            workload_selector: None,
            unknown: vec![],
        }
    }

    #[test]
    fn subset_fields_replace_top_level_ones_and_port_level_replaces_all() {
        let dr = dr();
        let base = settings(Some(&dr), None, 80);
        assert_eq!(base.load_balancer, lb(SimpleLb::Random));
        let v2 = settings(Some(&dr), Some("v2"), 80);
        assert_eq!(v2.load_balancer, lb(SimpleLb::RoundRobin));
        // Not set in the subset: inherited.
        assert_eq!(
            v2.outlier_detection.unwrap().consecutive_5xx_errors,
            Some(7)
        );
        let port = settings(Some(&dr), Some("v2"), 9090);
        assert_eq!(port.load_balancer, lb(SimpleLb::LeastRequest));
        assert_eq!(port.outlier_detection, None);
        assert_eq!(settings(None, Some("v2"), 80), PolicySettings::default());
    }
}
