//! The waypoint translation against the seeds (Istio YAML from the course
//! notes, unmodified), loaded through the real source next to a small
//! mesh: namespaces `tutorial` and `default` (ambient, each with its
//! waypoint `wp`), services reviews / ratings / order / delivery /
//! httpbin / productpage and their versioned pods.
use envoy_types::pb::envoy::config::{
    cluster::v3::{cluster::LbPolicy, Cluster},
    endpoint::v3::lb_endpoint::HostIdentifier,
    route::v3::{
        header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
        route_match::PathSpecifier, Route, RouteAction, RouteConfiguration, VirtualHost,
    },
};

use super::*;
use crate::source::{load_files, SourceConfig};

/// (namespace, name, port, target port, versions, third IP octet).
type ServiceSpec = (
    &'static str,
    &'static str,
    u16,
    u16,
    &'static [&'static str],
    u8,
);

pub(crate) fn base_yaml() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 172.18.0.2}]}\n",
    );
    for ns in ["tutorial", "default"] {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: wp, namespace: {ns}}}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]\n"
        ));
    }
    let services: &[ServiceSpec] = &[
        ("tutorial", "reviews", 9080, 9080, &["v1", "v2", "v3"], 1),
        ("tutorial", "order", 8080, 8080, &["v1"], 2),
        ("tutorial", "delivery", 8080, 8081, &["v1"], 3),
        ("default", "reviews", 9080, 9080, &["v1", "v2", "v3"], 4),
        ("default", "ratings", 9080, 9080, &["v1", "v2"], 5),
        ("default", "httpbin", 8000, 80, &["v1"], 6),
        ("default", "productpage", 9080, 9080, &["v1"], 7),
    ];
    let mut wp_ip = 200;
    for ns in ["tutorial", "default"] {
        wp_ip += 1;
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: wp-0\n  namespace: {ns}\n  labels: {{gateway.networking.k8s.io/gateway-name: wp}}\nspec: {{nodeName: node-1, serviceAccountName: wp}}\nstatus: {{podIP: 10.244.9.{wp_ip}}}\n"
        ));
    }
    for (ns, name, port, target, versions, n) in services {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: 10.96.{n}.1\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {port}, targetPort: {target}}}]\n"
        ));
        for (i, v) in versions.iter().enumerate() {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-{v}\n  namespace: {ns}\n  labels: {{app: {name}, version: {v}}}\nspec: {{nodeName: node-1, serviceAccountName: {name}}}\nstatus: {{podIP: 10.244.{n}.{}}}\n",
                i + 1
            ));
        }
    }
    out
}

pub(crate) fn seed(name: &str) -> String {
    let path = format!(
        "{}/tests/data/seeds/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn state_with(seeds: &[&str]) -> crate::model::MeshState {
    let mut files = vec![("00-base.yaml".to_string(), base_yaml())];
    files.extend(seeds.iter().map(|s| (format!("{s}.yaml"), seed(s))));
    load_files(&files, &SourceConfig::default())
        .unwrap_or_else(|p| panic!("{p:?}"))
        .state
}

fn translated(seeds: &[&str]) -> Translation {
    translate(&state_with(seeds), "istio-system")
}

fn rc<'t>(t: &'t Translation, ns: &str) -> &'t RouteConfiguration {
    &t.routes[&format!("waypoint/{ns}/wp")]
}

fn vhost<'t>(t: &'t Translation, ns: &str, svc: &str, port: u16) -> &'t VirtualHost {
    let name = format!("{svc}.{ns}.svc.cluster.local:{port}");
    rc(t, ns)
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

fn action(r: &Route) -> &RouteAction {
    match &r.action {
        Some(Action::Route(a)) => a,
        other => panic!("route {} has no route action: {other:?}", r.name),
    }
}

/// `[(cluster, weight)]`; a single cluster has weight 0.
fn clusters_of(r: &Route) -> Vec<(String, u32)> {
    match &action(r).cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 0)],
        Some(ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.unwrap().value))
            .collect(),
        other => panic!("unexpected cluster specifier {other:?}"),
    }
}

fn cluster<'t>(t: &'t Translation, name: &str) -> &'t Cluster {
    t.clusters
        .get(name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

#[test]
fn one_listener_and_route_configuration_per_waypoint() {
    let t = translated(&[]);
    assert_eq!(
        t.listeners.keys().collect::<Vec<_>>(),
        ["waypoint/default/wp", "waypoint/tutorial/wp"]
    );
    assert_eq!(
        t.routes.keys().collect::<Vec<_>>(),
        ["waypoint/default/wp", "waypoint/tutorial/wp"]
    );
    let names: Vec<&str> = rc(&t, "tutorial")
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "delivery.tutorial.svc.cluster.local:8080",
            "order.tutorial.svc.cluster.local:8080",
            "reviews.tutorial.svc.cluster.local:9080",
        ]
    );
    let vh = vhost(&t, "tutorial", "reviews", 9080);
    assert_eq!(
        vh.domains,
        [
            "reviews.tutorial.svc.cluster.local:9080",
            "reviews:9080",
            "reviews.tutorial:9080",
            "reviews.tutorial.svc:9080",
            "10.96.1.1:9080",
            "reviews.tutorial.svc.cluster.local",
            "reviews",
            "reviews.tutorial",
            "reviews.tutorial.svc",
            "10.96.1.1",
        ]
    );
    // No VirtualService: everything to the default cluster, Istio's retries.
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(
        clusters_of(&vh.routes[0]),
        [(
            "outbound|9080||reviews.tutorial.svc.cluster.local".to_string(),
            0
        )]
    );
    let retry = action(&vh.routes[0]).retry_policy.clone().unwrap();
    assert_eq!(retry.num_retries.unwrap().value, 2);
    assert_eq!(retry.retriable_status_codes, [503]);
}

#[test]
fn seed_002_02_weights_become_weighted_clusters() {
    let t = translated(&["002-02"]);
    let vh = vhost(&t, "tutorial", "reviews", 9080);
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(vh.routes[0].name, "tutorial/reviews/0");
    assert_eq!(
        clusters_of(&vh.routes[0]),
        [
            (
                "outbound|9080|v1|reviews.tutorial.svc.cluster.local".to_string(),
                30
            ),
            (
                "outbound|9080|v2|reviews.tutorial.svc.cluster.local".to_string(),
                70
            ),
        ]
    );
    assert_eq!(
        action(&vh.routes[0]).timeout,
        Some(pb::duration(std::time::Duration::ZERO))
    );
    // The other namespace's reviews is not touched.
    let other = vhost(&t, "default", "reviews", 9080);
    assert_eq!(other.routes[0].name, "default");
}

#[test]
fn seed_002_04_regex_header_match_then_catch_all() {
    let t = translated(&["002-04"]);
    let routes = &vhost(&t, "tutorial", "reviews", 9080).routes;
    assert_eq!(routes.len(), 2);
    let m = routes[0].r#match.as_ref().unwrap();
    assert_eq!(m.path_specifier, Some(PathSpecifier::Prefix("/".into())));
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.headers[0].name, "baggage-user-agent");
    let Some(HeaderMatchSpecifier::StringMatch(sm)) = &m.headers[0].header_match_specifier else {
        panic!("not a string match: {:?}", m.headers[0]);
    };
    assert_eq!(
        sm.match_pattern,
        Some(
            envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::SafeRegex(
                route_match::regex(".*Firefox.*")
            )
        )
    );
    assert_eq!(
        clusters_of(&routes[0]),
        [(
            "outbound|9080|v2|reviews.tutorial.svc.cluster.local".to_string(),
            0
        )]
    );
    assert_eq!(routes[1].name, "tutorial/reviews/1");
    assert!(routes[1].r#match.as_ref().unwrap().headers.is_empty());
    assert_eq!(
        clusters_of(&routes[1]),
        [(
            "outbound|9080|v1|reviews.tutorial.svc.cluster.local".to_string(),
            0
        )]
    );
}

#[test]
fn seed_002_05_and_002_06_timeout_and_retries() {
    let t = translated(&["002-05"]);
    let r = &vhost(&t, "tutorial", "order", 8080).routes[0];
    assert_eq!(
        action(r).timeout,
        Some(pb::duration(std::time::Duration::from_secs(3)))
    );
    assert_eq!(
        clusters_of(r),
        [(
            "outbound|8080||order.tutorial.svc.cluster.local".to_string(),
            0
        )]
    );

    let t = translated(&["002-06"]);
    let a = action(&vhost(&t, "tutorial", "order", 8080).routes[0]).clone();
    assert_eq!(
        a.timeout,
        Some(pb::duration(std::time::Duration::from_secs(3)))
    );
    let retry = a.retry_policy.unwrap();
    assert_eq!(retry.num_retries.unwrap().value, 3);
    assert_eq!(
        retry.per_try_timeout,
        Some(pb::duration(std::time::Duration::from_secs(2)))
    );
    assert_eq!(
        retry.retry_on,
        "5xx,retriable-4xx,gateway-error,connect-failure,refused-stream"
    );
    assert!(retry.retriable_status_codes.is_empty());
    assert_eq!(retry.host_selection_retry_max_attempts, 5);
    assert_eq!(
        retry.retry_host_predicate[0].name,
        "envoy.retry_host_predicates.previous_hosts"
    );
}

#[test]
fn seed_002_07_round_robin_and_outlier_detection() {
    let t = translated(&["002-07"]);
    let c = cluster(&t, "outbound|8080||delivery.tutorial.svc.cluster.local");
    assert_eq!(c.lb_policy, LbPolicy::RoundRobin as i32);
    let o = c.outlier_detection.clone().unwrap();
    assert_eq!(o.consecutive_5xx.unwrap().value, 1);
    assert_eq!(o.enforcing_consecutive_5xx.unwrap().value, 100);
    assert_eq!(o.enforcing_consecutive_gateway_failure.unwrap().value, 0);
    assert_eq!(o.enforcing_success_rate.unwrap().value, 0);
    assert_eq!(
        o.interval,
        Some(pb::duration(std::time::Duration::from_secs(10)))
    );
    assert_eq!(
        o.base_ejection_time,
        Some(pb::duration(std::time::Duration::from_secs(180)))
    );
    assert_eq!(o.max_ejection_percent.unwrap().value, 100);
    assert_eq!(
        c.common_lb_config
            .clone()
            .unwrap()
            .healthy_panic_threshold
            .unwrap()
            .value,
        0.0
    );
    // Endpoints: pod IP and the target port (8081, not the service's 8080).
    let cla = &t.endpoints["outbound|8080||delivery.tutorial.svc.cluster.local"];
    let eps = &cla.endpoints[0].lb_endpoints;
    assert_eq!(eps.len(), 1);
    let Some(HostIdentifier::Endpoint(e)) = &eps[0].host_identifier else {
        panic!("no endpoint");
    };
    assert_eq!(e.address, Some(endpoints::socket("10.244.3.1", 8081)));
}

#[test]
fn seed_003_04_and_003_05_subsets_policies_and_endpoints() {
    let t = translated(&["003-04", "003-05"]);
    let name = |s: &str| format!("outbound|9080|{s}|reviews.default.svc.cluster.local");
    assert_eq!(cluster(&t, &name("v1")).lb_policy, LbPolicy::Random as i32);
    assert_eq!(
        cluster(&t, &name("v2")).lb_policy,
        LbPolicy::RoundRobin as i32
    );
    assert_eq!(cluster(&t, &name("v3")).lb_policy, LbPolicy::Random as i32);
    assert_eq!(cluster(&t, &name("")).lb_policy, LbPolicy::Random as i32);
    // No DestinationRule: Istio's LEAST_REQUEST.
    assert_eq!(
        cluster(&t, "outbound|9080||reviews.tutorial.svc.cluster.local").lb_policy,
        LbPolicy::LeastRequest as i32
    );
    for (subset, ip) in [
        ("v1", "10.244.4.1"),
        ("v2", "10.244.4.2"),
        ("v3", "10.244.4.3"),
    ] {
        let eps = &t.endpoints[&name(subset)].endpoints[0].lb_endpoints;
        assert_eq!(eps.len(), 1, "{subset}");
        let Some(HostIdentifier::Endpoint(e)) = &eps[0].host_identifier else {
            panic!("no endpoint");
        };
        assert_eq!(e.address, Some(endpoints::socket(ip, 9080)));
        let md = &eps[0].metadata.as_ref().unwrap().filter_metadata["istio"].fields["workload"];
        assert_eq!(
            md,
            &pb::string_value(format!("Kubernetes//Pod/default/reviews-{subset}"))
        );
    }
    assert_eq!(t.endpoints[&name("")].endpoints[0].lb_endpoints.len(), 3);
    let r = &vhost(&t, "default", "reviews", 9080).routes[0];
    assert_eq!(
        clusters_of(r),
        [(name("v1"), 10), (name("v2"), 80), (name("v3"), 10)]
    );
}

#[test]
fn seed_003_06_two_entries_timeout_and_default_retry_on() {
    let t = translated(&["003-06"]);
    let routes = &vhost(&t, "default", "ratings", 9080).routes;
    assert_eq!(routes.len(), 2);
    assert_eq!(
        action(&routes[0]).timeout,
        Some(pb::duration(std::time::Duration::from_secs(10)))
    );
    let retry = action(&routes[1]).retry_policy.clone().unwrap();
    assert_eq!(retry.num_retries.unwrap().value, 3);
    assert_eq!(
        retry.per_try_timeout,
        Some(pb::duration(std::time::Duration::from_secs(2)))
    );
    assert_eq!(retry.retry_on, route_action::DEFAULT_RETRY_ON);
    assert_eq!(retry.retriable_status_codes, [503]);
}

#[test]
fn seed_003_07_circuit_breakers_and_outlier() {
    let t = translated(&["003-07"]);
    let c = cluster(&t, "outbound|8000||httpbin.default.svc.cluster.local");
    let th = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(th.max_connections.unwrap().value, 1);
    assert_eq!(th.max_pending_requests.unwrap().value, 1);
    assert_eq!(th.max_requests.unwrap().value, u32::MAX);
    assert_eq!(th.max_retries.unwrap().value, u32::MAX);
    let o = c.outlier_detection.clone().unwrap();
    // `consecutiveErrors: 1` is the deprecated gateway-error count.
    assert_eq!(o.consecutive_5xx, None);
    assert_eq!(o.consecutive_gateway_failure.unwrap().value, 1);
    assert_eq!(o.enforcing_consecutive_gateway_failure.unwrap().value, 100);
    assert_eq!(
        o.interval,
        Some(pb::duration(std::time::Duration::from_secs(1)))
    );
    assert_eq!(
        o.base_ejection_time,
        Some(pb::duration(std::time::Duration::from_secs(180)))
    );
    let opts = &c.typed_extension_protocol_options[clusters::PROTOCOL_OPTIONS_KEY];
    let opts = <envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions as prost::Message>::decode(opts.value.as_slice()).unwrap();
    assert_eq!(
        opts.common_http_protocol_options
            .unwrap()
            .max_requests_per_connection
            .unwrap()
            .value,
        1
    );
    assert_eq!(
        c.connect_timeout,
        Some(pb::duration(std::time::Duration::from_secs(10)))
    );
}

#[test]
fn seed_003_08_fault_delay_per_million() {
    let t = translated(&["003-08"]);
    let r = &vhost(&t, "default", "ratings", 9080).routes[0];
    let any = &r.typed_per_filter_config[listener::FAULT_FILTER];
    assert_eq!(any.type_url, fault::FAULT_TYPE);
    let f = <envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault as prost::Message>::decode(any.value.as_slice()).unwrap();
    let p = f.delay.unwrap().percentage.unwrap();
    assert_eq!(p.numerator, 1000);
    assert_eq!(
        p.denominator,
        envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType::Million as i32
    );
    assert_eq!(
        clusters_of(r),
        [(
            "outbound|9080|v1|ratings.default.svc.cluster.local".to_string(),
            0
        )]
    );
}

#[test]
fn seed_000_01_star_host_bound_to_mesh_routes_every_service() {
    let t = translated(&["000-01"]);
    let routes = &vhost(&t, "default", "productpage", 9080).routes;
    let paths: Vec<PathSpecifier> = routes
        .iter()
        .map(|r| r.r#match.clone().unwrap().path_specifier.unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            PathSpecifier::Path("/productpage".into()),
            PathSpecifier::Prefix("/static".into()),
            PathSpecifier::Path("/login".into()),
            PathSpecifier::Path("/logout".into()),
            PathSpecifier::Prefix("/api/v1/products".into()),
        ]
    );
    for r in routes {
        assert_eq!(r.name, "default/bookinfos/0");
        assert_eq!(
            clusters_of(r),
            [(
                "outbound|9080||productpage.default.svc.cluster.local".to_string(),
                0
            )]
        );
    }
    // "*" names every service, in the other namespace's waypoint too.
    assert_eq!(vhost(&t, "tutorial", "order", 8080).routes.len(), 5);
}

#[test]
fn gateway_only_and_unknown_host_virtual_services_do_not_apply() {
    let t = translated(&["004-01", "003-03", "003-02"]);
    for rc in t.routes.values() {
        for vh in &rc.virtual_hosts {
            assert_eq!(vh.routes.len(), 1, "{}", vh.name);
            assert_eq!(vh.routes[0].name, "default");
        }
    }
}

#[test]
fn every_seed_translates_without_duplicate_domains_and_with_positive_weights() {
    let all = [
        "000-01", "002-02", "002-04", "002-05", "002-06", "002-07", "003-04", "003-05", "003-06",
        "003-07", "003-08", "004-02", "004-03",
    ];
    for s in all {
        let t = translated(&[s]);
        for rc in t.routes.values() {
            let mut seen = std::collections::BTreeSet::new();
            for vh in &rc.virtual_hosts {
                for d in &vh.domains {
                    assert!(seen.insert(d.clone()), "{s}: duplicate domain {d}");
                }
                for r in &vh.routes {
                    if let Some(Action::Route(a)) = &r.action {
                        if let Some(ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier {
                            let total: u32 =
                                w.clusters.iter().map(|c| c.weight.unwrap().value).sum();
                            assert!(total > 0, "{s}: {}", r.name);
                        }
                    }
                }
            }
        }
        for c in t.clusters.values() {
            let ct = c.connect_timeout.unwrap();
            assert!(ct.seconds > 0 || ct.nanos > 0, "{s}: {}", c.name);
        }
    }
}

#[test]
fn a_shared_waypoint_never_repeats_a_domain() {
    // reviews of `default` also uses the tutorial waypoint: both services
    // answer to `reviews:9080`; the first virtual host keeps it.
    // Relabel the base's `default/reviews`.
    let base = base_yaml().replace(
        "metadata: {name: reviews, namespace: default}\n",
        "metadata:\n  name: reviews\n  namespace: default\n  labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: tutorial}\n",
    );
    let state = load_files(
        &[("00-base.yaml".to_string(), base)],
        &SourceConfig::default(),
    )
    .unwrap_or_else(|p| panic!("{p:?}"))
    .state;
    let t = translate(&state, "istio-system");
    let hosts = &rc(&t, "tutorial").virtual_hosts;
    let with = |d: &str| -> Vec<&str> {
        hosts
            .iter()
            .filter(|v| v.domains.iter().any(|x| x == d))
            .map(|v| v.name.as_str())
            .collect()
    };
    assert_eq!(
        with("reviews:9080"),
        ["reviews.default.svc.cluster.local:9080"]
    );
    assert_eq!(
        with("reviews.tutorial:9080"),
        ["reviews.tutorial.svc.cluster.local:9080"]
    );
    assert_eq!(
        with("reviews.default:9080"),
        ["reviews.default.svc.cluster.local:9080"]
    );
    // The default namespace's own waypoint no longer serves it.
    assert!(vhost_names(&t, "default")
        .iter()
        .all(|n| !n.starts_with("reviews.")));
}

fn vhost_names(t: &Translation, ns: &str) -> Vec<String> {
    rc(t, ns)
        .virtual_hosts
        .iter()
        .map(|v| v.name.clone())
        .collect()
}

mod export_to;
