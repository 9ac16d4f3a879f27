//! The waypoint tables against a contract-shaped dump
//! (tests/fixtures/waypoint_config_dump.json).
use super::*;

const DUMP: &str = include_str!("../../../tests/fixtures/waypoint_config_dump.json");

fn show(kind: Kind, f: &Filters) -> String {
    let doc: Value = serde_json::from_str(DUMP).unwrap();
    let out = super::super::render(kind, &doc, f, Output::Table, 0).unwrap();
    for line in out.lines() {
        assert!(line.chars().count() <= render::WIDTH, "too wide: {line}");
    }
    out
}

/// The cells of a table line (columns are separated by two or more spaces).
fn table_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn listener_table() {
    let out = show(Kind::Listener, &Filters::default());
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "ADDRESS", "ROUTE-CONFIG", "HTTP-FILTERS"]);
    assert_eq!(
        rows[1],
        [
            "waypoint/default/waypoint",
            "0.0.0.0:15080",
            "waypoint/default/waypoint",
            "fault,rbac,router"
        ]
    );
    assert_eq!(rows.len(), 2);
}

#[test]
fn route_table_shows_matches_and_short_actions() {
    // Fits 100 columns by cutting MATCH and ACTION; their full text:
    let fitted = show(Kind::Route, &Filters::default());
    assert!(fitted.contains("…"), "{fitted}");
    let doc: Value = serde_json::from_str(DUMP).unwrap();
    let out = routes(&doc, &Filters::default()).0.render(400);
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        [
            "ROUTE",
            "VIRTUAL-HOST",
            "MATCH",
            "ACTION",
            "TIMEOUT",
            "RETRIES"
        ]
    );
    assert_eq!(rows.len(), 4, "{out}");
    assert_eq!(
        rows[1],
        [
            "default/reviews/0",
            "reviews.default:9080",
            "prefix=/ header baggage-user-agent~=.*Firefox.*",
            "cluster reviews.default:9080/v2",
            "-",
            "2x"
        ]
    );
    assert_eq!(
        rows[2],
        [
            "default/reviews/1",
            "reviews.default:9080",
            "prefix=/",
            "weighted reviews.default:9080/v1=30, reviews.default:9080/v2=70",
            "3s",
            "3x"
        ]
    );
    // A virtual host without routes answers 404, as Envoy's would.
    assert_eq!(
        rows[3],
        ["-", "ratings.shop:9080", "-", "404 (no route)", "-", "-"]
    );
}

#[test]
fn route_namespace_filter() {
    let f = Filters {
        namespace: Some("shop".into()),
        ..Filters::default()
    };
    let rows = table_rows(&show(Kind::Route, &f));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][1], "ratings.shop:9080");
}

#[test]
fn cluster_table_hides_unlimited_thresholds() {
    let out = show(Kind::Cluster, &Filters::default());
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        [
            "SERVICE",
            "PORT",
            "SUBSET",
            "LB",
            "CIRCUIT-BREAKERS",
            "OUTLIER-DETECTION"
        ]
    );
    // By service, port, subset; `.svc.cluster.local` left out.
    assert_eq!(rows[1], ["ratings.shop", "9080", "-", "RANDOM", "-", "-"]);
    assert_eq!(
        rows[2],
        ["reviews.default", "9080", "-", "LEAST_REQUEST", "-", "-"]
    );
    assert_eq!(
        rows[3],
        [
            "reviews.default",
            "9080",
            "v1",
            "ROUND_ROBIN",
            "conn=1,pending=1",
            "5xx=1 every 10s eject 180s max 100%"
        ]
    );
}

#[test]
fn endpoint_table_and_address_filter() {
    let out = show(Kind::Endpoint, &Filters::default());
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        ["ENDPOINT", "STATUS", "HBONE", "ACTIVE", "EJECTED", "WORKLOAD", "CLUSTER"]
    );
    assert_eq!(
        rows[1],
        [
            "10.244.1.3:9080",
            "HEALTHY",
            "yes",
            "2",
            "0",
            "default/reviews-v1",
            "reviews.default:9080/v1"
        ]
    );
    assert_eq!(rows[2][2], "no");
    assert_eq!(rows[2][4], "1");
    let f = Filters {
        address: Some("10.244.2.7".into()),
        ..Filters::default()
    };
    let rows = table_rows(&show(Kind::Endpoint, &f));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][1], "UNHEALTHY");
}

#[test]
fn json_output_is_the_dump_section() {
    let doc: Value = serde_json::from_str(DUMP).unwrap();
    let out =
        super::super::render(Kind::Cluster, &doc, &Filters::default(), Output::Json, 0).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(
        v[0]["name"],
        "outbound|9080||ratings.shop.svc.cluster.local"
    );
}

#[test]
fn an_agent_dump_is_named_as_the_wrong_target() {
    let doc = serde_json::json!({"workloads": [], "services": []});
    let out = render(Kind::Listener, &doc, &Filters::default(), Output::Table);
    assert!(
        out.contains("is this a waypoint's admin endpoint?"),
        "{out}"
    );
}

#[test]
fn a_gateway_listener_table_has_a_row_per_filter_chain() {
    let doc = serde_json::json!({"listeners": [
        {"name": "0.0.0.0_443", "address": "0.0.0.0:443", "filter_chains": [
            {"server_names": ["a.example.com"], "tls": false,
             "tcp_proxy": [{"cluster": "outbound|8443||web.shop.svc.cluster.local", "weight": 1}]},
            {"server_names": ["b.example.com"], "tls": true,
             "route_config": "https.443.b.gw.shop", "http_filters": ["envoy.filters.http.router"]},
        ]},
        {"name": "0.0.0.0_9000", "address": "0.0.0.0:9000", "filter_chains": [
            {"server_names": [], "tls": false, "tcp_proxy": [
                {"cluster": "outbound|9000||echo.shop.svc.cluster.local", "weight": 80},
                {"cluster": "outbound|9000|v2|echo.shop.svc.cluster.local", "weight": 20}]},
        ]},
    ]});
    let out =
        super::super::render(Kind::Listener, &doc, &Filters::default(), Output::Table, 0).unwrap();
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        ["NAME", "ADDRESS", "SNI", "TLS", "CHAIN", "HTTP-FILTERS"]
    );
    assert_eq!(
        rows[1],
        [
            "0.0.0.0_443",
            "0.0.0.0:443",
            "a.example.com",
            "passthrough",
            "tcp web.shop:8443",
            "-"
        ]
    );
    assert_eq!(
        rows[2],
        [
            "0.0.0.0_443",
            "0.0.0.0:443",
            "b.example.com",
            "terminate",
            "routes https.443.b.gw.shop",
            "router"
        ]
    );
    // A long chain gives up its middle to fit the width.
    assert_eq!(rows[3][..4], ["0.0.0.0_9000", "0.0.0.0:9000", "*", "-"]);
    assert!(rows[3][4].starts_with("tcp echo.shop:9"), "{:?}", rows[3]);
    assert!(rows[3][4].ends_with("/v2=20"), "{:?}", rows[3]);
}

#[test]
fn istioctl_port_direction_and_fqdn_filters() {
    let doc = json!({
        "listeners": [{"name": "waypoint/default/waypoint", "address": "0.0.0.0:15080"}],
        "clusters": [
            {"name": "outbound|9080|v1|reviews.default.svc.cluster.local"},
            {"name": "outbound|9081||reviews.default.svc.cluster.local"},
            {"name": "outbound|9080||ratings.shop.svc.cluster.local"},
            {"name": "inbound|9080||"},
            {"name": "blackhole"}
        ],
        "endpoints": [
            {"cluster": "outbound|9080|v1|reviews.default.svc.cluster.local", "address": "10.244.1.3:9080"},
            {"cluster": "outbound|9081||reviews.default.svc.cluster.local", "address": "10.244.1.3:9081"},
            {"cluster": "outbound|9080||ratings.shop.svc.cluster.local", "address": "10.244.2.7:9080"}
        ]
    });
    let names = |kind: Kind, f: &Filters, key: &str| -> Vec<String> {
        let out = super::super::render(kind, &doc, f, Output::Json, 0).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c[key].as_str().unwrap().to_string())
            .collect()
    };
    let f = Filters {
        port: Some(9080),
        direction: Some(super::super::Direction::Outbound),
        ..Filters::default()
    };
    assert_eq!(
        names(Kind::Cluster, &f, "name"),
        [
            "outbound|9080||ratings.shop.svc.cluster.local",
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        ]
    );
    assert_eq!(
        names(Kind::Endpoint, &f, "address"),
        ["10.244.1.3:9080", "10.244.2.7:9080"]
    );
    let inbound = Filters {
        direction: Some(super::super::Direction::Inbound),
        ..Filters::default()
    };
    assert_eq!(names(Kind::Cluster, &inbound, "name"), ["inbound|9080||"]);
    let by_host = Filters {
        fqdn: Some("reviews.default".into()),
        ..Filters::default()
    };
    assert_eq!(
        names(Kind::Cluster, &by_host, "name"),
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9081||reviews.default.svc.cluster.local"
        ]
    );
    assert_eq!(
        names(Kind::Endpoint, &by_host, "address"),
        ["10.244.1.3:9080", "10.244.1.3:9081"]
    );
    // `reviews` is a prefix of the host's labels, `review` is not.
    let partial = Filters {
        fqdn: Some("review".into()),
        ..Filters::default()
    };
    assert!(names(Kind::Cluster, &partial, "name").is_empty());
    // Listeners: their address's port; a waypoint's are all inbound.
    let port = |p| Filters {
        port: Some(p),
        ..Filters::default()
    };
    assert_eq!(names(Kind::Listener, &port(15080), "name").len(), 1);
    assert!(names(Kind::Listener, &port(9080), "name").is_empty());
    assert!(names(Kind::Listener, &f, "name").is_empty());
    // YAML of the same data.
    let yaml = super::super::render(Kind::Cluster, &doc, &by_host, Output::Yaml, 0).unwrap();
    assert!(
        yaml.contains("- name: outbound|9081||reviews.default.svc.cluster.local"),
        "{yaml}"
    );
}
