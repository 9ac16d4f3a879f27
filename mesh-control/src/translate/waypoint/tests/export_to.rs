//! `exportTo` on the waypoints: a VirtualService or DestinationRule
//! applies to a service's traffic when it is exported to the namespace of
//! the waypoint serving the service; DestinationRules are looked up in
//! the waypoint's namespace, then the service's, then the root namespace.
use super::*;

/// Namespace `shop` whose Service `cart` uses the waypoint of `default`.
const SHOP: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio.io/dataplane-mode: ambient}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: cart\n  namespace: shop\n  labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: default}\nspec:\n  clusterIP: 10.96.8.1\n  selector: {app: cart}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";

const CART: &str = "cart.shop.svc.cluster.local";

fn with(extra: &[String]) -> Translation {
    let files = [
        ("00-base.yaml".to_string(), base_yaml()),
        ("10-shop.yaml".to_string(), SHOP.to_string()),
        ("20-extra.yaml".to_string(), extra.concat()),
    ];
    let snapshot = load_files(&files, &SourceConfig::default()).unwrap_or_else(|p| panic!("{p:?}"));
    translate(&snapshot.state, "istio-system")
}

fn vs(namespace: &str, host: &str, export_to: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: {namespace}}}\nspec:\n  hosts: [{host}]\n  exportTo: {export_to}\n  http:\n  - name: r\n    route: [{{destination: {{host: {host}}}}}]\n")
}

fn dr(namespace: &str, host: &str, export_to: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr, namespace: {namespace}}}\nspec:\n  host: {host}\n  exportTo: {export_to}\n  subsets: [{{name: from-{namespace}, labels: {{app: cart}}}}]\n")
}

/// Route names of the virtual host `<host>:<port>` on the waypoint of
/// `waypoint_ns`.
fn routes_on(t: &Translation, waypoint_ns: &str, host: &str, port: u16) -> Vec<String> {
    let name = format!("{host}:{port}");
    rc(t, waypoint_ns)
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
        .routes
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

/// The subsets `cart`'s clusters were built with.
fn cart_subsets(t: &Translation) -> Vec<String> {
    t.clusters
        .keys()
        .filter_map(|c| {
            c.strip_prefix("outbound|80|")?
                .strip_suffix(&format!("|{CART}"))
        })
        .filter(|s| !s.is_empty())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_virtual_service_private_to_its_namespace_is_not_applied_by_a_waypoint_elsewhere() {
    // cart (namespace shop) is served by the waypoint of namespace default.
    let t = with(&[vs("shop", "cart", "[\".\"]")]);
    assert_eq!(routes_on(&t, "default", CART, 80), ["default"]);
    // Private to the waypoint's own namespace: applied.
    let t = with(&[vs("default", CART, "[\".\"]")]);
    assert_eq!(routes_on(&t, "default", CART, 80), ["default/vs/r"]);
    // Same namespace for the VirtualService, the service and the waypoint.
    let t = with(&[vs("tutorial", "reviews", "[\".\"]")]);
    assert_eq!(
        routes_on(&t, "tutorial", "reviews.tutorial.svc.cluster.local", 9080),
        ["tutorial/vs/r"]
    );
}

#[test]
fn a_virtual_service_applies_where_its_export_list_names_the_waypoint_namespace() {
    for export_to in [
        "[\"*\"]",
        "[]",
        "[default]",
        "[\".\", default]",
        "[tutorial, default]",
    ] {
        let t = with(&[vs("shop", "cart", export_to)]);
        assert_eq!(
            routes_on(&t, "default", CART, 80),
            ["shop/vs/r"],
            "exportTo: {export_to}"
        );
    }
    for export_to in ["[tutorial]", "[\"~\"]", "[shop]"] {
        let t = with(&[vs("shop", "cart", export_to)]);
        assert_eq!(
            routes_on(&t, "default", CART, 80),
            ["default"],
            "exportTo: {export_to}"
        );
    }
}

#[test]
fn a_destination_rule_private_to_its_namespace_applies_only_to_that_namespace_s_waypoint() {
    let t = with(&[dr("shop", "cart", "[\".\"]")]);
    assert!(cart_subsets(&t).is_empty(), "{:?}", cart_subsets(&t));
    // Private to the waypoint's namespace: applied.
    let t = with(&[dr("default", CART, "[\".\"]")]);
    assert_eq!(cart_subsets(&t), ["from-default"]);
    for export_to in ["[\"*\"]", "[default]", "[]"] {
        let t = with(&[dr("shop", "cart", export_to)]);
        assert_eq!(cart_subsets(&t), ["from-shop"], "exportTo: {export_to}");
    }
}

#[test]
fn destination_rules_are_looked_up_in_the_waypoint_then_service_then_root_namespace() {
    let proxy = dr("default", CART, "[\"*\"]");
    let service = dr("shop", "cart", "[\"*\"]");
    let root = dr("istio-system", CART, "[\"*\"]");
    let other = dr("other", CART, "[\"*\"]");
    // File order does not decide: the namespaces do.
    let all = [other.clone(), root.clone(), service.clone(), proxy.clone()];
    assert_eq!(cart_subsets(&with(&all)), ["from-default"]);
    assert_eq!(cart_subsets(&with(&all[..3])), ["from-shop"]);
    assert_eq!(cart_subsets(&with(&all[..2])), ["from-istio-system"]);
    // Outside those three namespaces: never, as istiod (a rule there
    // serves its own namespace's proxies).
    assert!(cart_subsets(&with(&all[..1])).is_empty());
    // A rule the waypoint's namespace cannot see is skipped for the next.
    let hidden = dr("shop", "cart", "[\".\"]");
    assert_eq!(
        cart_subsets(&with(&[hidden, root.clone()])),
        ["from-istio-system"]
    );
    // A wildcard of the waypoint's namespace beats an exact host elsewhere.
    let wildcard = dr("default", "\"*.shop.svc.cluster.local\"", "[\"*\"]");
    assert_eq!(cart_subsets(&with(&[service, wildcard])), ["from-default"]);
}
