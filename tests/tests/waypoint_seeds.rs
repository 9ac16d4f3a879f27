//! Every VirtualService / DestinationRule of the course notes
//! (`mesh-control/tests/data/seeds/`, extracted unmodified from
//! `../shared/seeds/`) applied to a two-node mesh with a waypoint, and the
//! behaviour Istio documents checked with real traffic: client pod →
//! node agent (eBPF capture) → HBONE → mesh-waypoint → HBONE → node agent
//! → `podhttp` pods whose replies name their version.
//!
//! Supporting objects the notes assume but do not show (Services, pods
//! labelled by version, and DestinationRule subsets for `tutorial/reviews`)
//! are written by the test; the seed blocks themselves are applied as they
//! are. Durations the notes set to minutes (`baseEjectionTime: 3m`) are
//! checked for their start here and in full with paused time in
//! mesh-waypoint's unit tests; a short-duration variant checks the return.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use mesh_e2e::{cluster::Cluster, require_root, Binaries};
use mesh_testkit::{eventually, try_eventually};
use serde_json::Value;

const PORT: u16 = 9080;

fn seed(file: &str) -> String {
    let path = format!(
        "{}/../mesh-control/tests/data/seeds/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A backend pod: (pod, app, version).
type Backend<'a> = (&'a str, &'a str, &'a str);

/// A service: (name, VIP).
type Svc<'a> = (&'a str, &'a str);

/// Two nodes: node1 has `client` and the first half of the backends,
/// node2 the waypoint (`waypoint` in `default`) and the rest. Every
/// namespace uses the waypoint. Backends run `podhttp` on 9080.
fn mesh(tag: &str, ns: &str, backends: &[Backend], services: &[Svc], extra_yaml: &str) -> Cluster {
    require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let half = backends.len().div_ceil(2);
    let node1: Vec<&str> = std::iter::once("client")
        .chain(backends[..half].iter().map(|b| b.0))
        .collect();
    let node2: Vec<&str> = std::iter::once("waypoint")
        .chain(backends[half..].iter().map(|b| b.0))
        .collect();
    let mut c = Cluster::new(tag, bins, &[("node1", &node1), ("node2", &node2)]).unwrap();
    let pods: Vec<&str> = backends.iter().map(|b| b.0).collect();
    c.move_pods(ns, &pods).unwrap();
    for (pod, app, version) in backends {
        c.label_pod(pod, &[("app", app), ("version", version)])
            .unwrap();
    }
    c.label_namespace("istio.io/use-waypoint", "waypoint")
        .unwrap();
    c.label_namespace("istio.io/use-waypoint-namespace", "default")
        .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    let mut yaml = String::new();
    for (name, vip) in services {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  clusterIP: {vip}\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: {PORT}\n    targetPort: {PORT}\n"
        );
    }
    c.write_config("10-services.yaml", &yaml).unwrap();
    if !extra_yaml.is_empty() {
        c.write_config("11-fixtures.yaml", extra_yaml).unwrap();
    }
    let names: Vec<(&str, &str, IpAddr)> = services
        .iter()
        .map(|(n, vip)| (*n, ns, vip.parse().unwrap()))
        .collect();
    c.resolve_services(&names).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    for (pod, _, version) in backends {
        c.serve_http(pod, version, PORT, &[]).unwrap();
    }
    c.start_waypoint("waypoint", "waypoint").unwrap();
    c
}

/// The part of the waypoint's config that routing changes (not the
/// endpoint counters).
fn config_part(dump: &Value) -> String {
    format!("{}{}", dump["routes"], dump["clusters"])
}

/// Applies (replaces) the routing config under test and waits until the
/// waypoint's routes/clusters changed and `ok(routes JSON, clusters JSON)`
/// holds.
fn apply(c: &Cluster, yaml: &str, ok: impl Fn(&str, &str) -> bool) {
    let before = config_part(&c.waypoints[0].config_dump().unwrap_or(Value::Null));
    c.write_config("20-under-test.yaml", yaml).unwrap();
    wait_dump(c, "the new config", |dump| {
        config_part(dump) != before
            && ok(&dump["routes"].to_string(), &dump["clusters"].to_string())
    });
    // RDS and CDS/EDS arrive as separate responses: wait until the
    // waypoint ACKed mesh-control's current version of every type.
    c.wait_control_synced("waypoint~", Duration::from_secs(20))
        .unwrap();
}

/// Routes or clusters mention `marker`.
fn has(marker: &'static str) -> impl Fn(&str, &str) -> bool {
    move |routes, clusters| routes.contains(marker) || clusters.contains(marker)
}

fn wait_dump(c: &Cluster, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let dump = try_eventually(what, Duration::from_secs(20), || {
        let dump = c.waypoints[0].config_dump().unwrap_or(Value::Null);
        if ok(&dump) {
            Ok(dump)
        } else {
            Err(format!("config_dump:\n{dump:#}"))
        }
    });
    dump.unwrap_or_else(|e| panic!("waypoint: {e}\nlog:\n{}", c.waypoints[0].log_tail()))
}

/// `podctl http` from the client pod: a summary (see mesh_e2e::httpc).
fn http(c: &Cluster, url: &str, count: usize, extra: &[&str]) -> Value {
    let count = count.to_string();
    let mut args = vec!["http", "--url", url, "--count", &count];
    args.extend_from_slice(extra);
    c.client("client", &args).unwrap()
}

fn n(v: &Value, key: &str, field: &str) -> u64 {
    v[field][key].as_u64().unwrap_or(0)
}

/// `count` draws with probability `p`: within 5 standard deviations.
fn assert_share(got: u64, count: u64, p: f64, what: &str) {
    let mean = count as f64 * p;
    let sd = (count as f64 * p * (1.0 - p)).sqrt().max(1.0);
    assert!(
        (got as f64 - mean).abs() <= 5.0 * sd,
        "{what}: {got} of {count}, expected about {mean:.0} (±{:.0})",
        5.0 * sd
    );
}

/// A DestinationRule with one subset per version label (`v1` → `version: v1`).
fn subsets(host: &str, ns: &str, versions: &[&str]) -> String {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {host}\n  namespace: {ns}\nspec:\n  host: {host}\n  subsets:\n"
    );
    for v in versions {
        yaml += &format!("  - name: {v}\n    labels:\n      version: {v}\n");
    }
    yaml
}

#[test]
fn tutorial_reviews_weights_and_firefox_header_route() {
    let c = mesh(
        "l7rev",
        "tutorial",
        &[
            ("reviews-v1", "reviews", "v1"),
            ("reviews-v2", "reviews", "v2"),
        ],
        &[("reviews", "10.96.0.20")],
        &subsets("reviews", "tutorial", &["v1", "v2"]),
    );
    let url = "http://10.96.0.20:9080/";

    // 002-02: 30 / 70.
    apply(
        &c,
        &seed("002-02.yaml"),
        has("outbound|9080|v2|reviews.tutorial"),
    );
    let r = http(&c, url, 400, &[]);
    assert_eq!(n(&r, "200", "statuses"), 400, "{r}");
    assert_share(n(&r, "v1", "versions"), 400, 0.3, "002-02 v1");
    assert_share(n(&r, "v2", "versions"), 400, 0.7, "002-02 v2");
    // The same over h2c, and by name with a real curl.
    let r = http(&c, url, 100, &["--h2"]);
    assert_eq!(n(&r, "200", "statuses"), 100, "{r}");
    assert!(n(&r, "v2", "versions") > 40, "{r}");
    let (status, body) = c
        .curl("client", &["http://reviews.tutorial:9080/"])
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // 002-03: everything to v2.
    apply(&c, &seed("002-03.yaml"), |routes, _| {
        !routes.contains("|v1|reviews")
    });
    let r = http(&c, url, 100, &[]);
    assert_eq!(n(&r, "v2", "versions"), 100, "002-03: {r}");

    // 002-04: Firefox (in baggage-user-agent) to v2, everything else to v1.
    apply(&c, &seed("002-04.yaml"), has("Firefox"));
    let firefox = http(
        &c,
        url,
        50,
        &[
            "--header",
            "baggage-user-agent: Mozilla/5.0 (X11) Gecko Firefox/120.0",
        ],
    );
    assert_eq!(
        n(&firefox, "v2", "versions"),
        50,
        "002-04 Firefox: {firefox}"
    );
    let chrome = http(
        &c,
        url,
        50,
        &["--header", "baggage-user-agent: Mozilla/5.0 Chrome/120.0"],
    );
    assert_eq!(n(&chrome, "v1", "versions"), 50, "002-04 other: {chrome}");
    let none = http(&c, url, 20, &[]);
    assert_eq!(n(&none, "v1", "versions"), 20, "002-04 no header: {none}");

    // The waypoint reported every request, with Istio's labels.
    let metrics = c.waypoints[0].metrics_text().unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"waypoint\"")
                && l.contains("destination_service=\"reviews.tutorial.svc.cluster.local\"")
                && l.contains("response_code=\"200\"")
                && l.contains("destination_version=\"v2\"")
        })
        .unwrap_or_else(|| panic!("no istio_requests_total for reviews v2:\n{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 200.0, "{line}");
}

#[test]
fn tutorial_order_timeout_and_retries() {
    let c = mesh(
        "l7ord",
        "tutorial",
        &[("order-1", "order", "v1"), ("order-2", "order", "v1")],
        &[("order", "10.96.0.30")],
        "",
    );
    let url = "http://10.96.0.30:9080/";

    // 002-05: a reply slower than 3 s becomes a 504 after 3 s.
    apply(&c, &seed("002-05.yaml"), has("3000"));
    let started = Instant::now();
    let slow = http(&c, "http://10.96.0.30:9080/?delay_ms=5000", 1, &[]);
    let took = started.elapsed();
    assert_eq!(n(&slow, "504", "statuses"), 1, "002-05: {slow}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4900),
        "002-05: the 504 came after {took:?}, not at the 3 s timeout"
    );
    let fast = http(&c, "http://10.96.0.30:9080/?delay_ms=100", 5, &[]);
    assert_eq!(n(&fast, "200", "statuses"), 5, "{fast}");

    // order-2 starts answering 500 (the notes' `PUT /actuator/down`).
    let order2 = format!("http://{}:9080/actuator/down", c.pod("order-2").ip);
    c.curl("client", &["-X", "PUT", &order2]).unwrap();
    // Without retries for 500 (Istio's default retries only 503 and
    // connect failures), some requests fail...
    let r = http(&c, url, 40, &[]);
    assert!(n(&r, "500", "statuses") > 0, "002-05 without retries: {r}");
    // 002-06: ...with `retryOn: 5xx,...` and 3 attempts, none does.
    apply(&c, &seed("002-06.yaml"), has("retriable-4xx"));
    let r = http(&c, url, 40, &[]);
    assert_eq!(n(&r, "200", "statuses"), 40, "002-06 with retries: {r}");
    assert_eq!(n(&r, "order-1", "pods"), 40, "{r}");
}

#[test]
fn delivery_outlier_detection_ejects_the_failing_instance() {
    let c = mesh(
        "l7out",
        "tutorial",
        &[
            ("delivery-1", "delivery", "v1"),
            ("delivery-2", "delivery", "v1"),
        ],
        &[("delivery", "10.96.0.40")],
        "",
    );
    let url = "http://10.96.0.40:9080/";
    let bad = format!("http://{}:9080/actuator", c.pod("delivery-2").ip);

    // 002-07 as written: one 5xx ejects for 3 minutes.
    apply(&c, &seed("002-07.yaml"), has("180000"));
    c.curl("client", &["-X", "PUT", &format!("{bad}/down")])
        .unwrap();
    let r = http(&c, url, 40, &[]);
    assert!(
        n(&r, "500", "statuses") <= 1,
        "002-07: more than one 500: {r}"
    );
    assert!(n(&r, "delivery-1", "pods") >= 39, "{r}");
    // Healthy again, but still ejected (3 minutes have not passed).
    c.curl("client", &["-X", "PUT", &format!("{bad}/up")])
        .unwrap();
    let r = http(&c, url, 20, &[]);
    assert_eq!(
        n(&r, "delivery-2", "pods"),
        0,
        "ejected host got traffic: {r}"
    );

    // The same rule with short durations (interval 1s, baseEjectionTime
    // 2s): the host comes back once the ejection time has passed.
    let short = seed("002-07.yaml")
        .replace("interval: 10s", "interval: 1s")
        .replace("baseEjectionTime: 3m", "baseEjectionTime: 2s");
    apply(&c, &short, has("2000"));
    c.curl("client", &["-X", "PUT", &format!("{bad}/down")])
        .unwrap();
    let r = http(&c, url, 10, &[]);
    assert!(n(&r, "500", "statuses") <= 1, "{r}");
    c.curl("client", &["-X", "PUT", &format!("{bad}/up")])
        .unwrap();
    eventually(
        "delivery-2 back in the rotation",
        Duration::from_secs(15),
        || {
            let r = http(&c, url, 10, &[]);
            if n(&r, "delivery-2", "pods") > 0 {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
}

#[test]
fn default_reviews_subsets_weights_uri_routes_and_ratings_rules() {
    let c = mesh(
        "l7def",
        "default",
        &[
            ("reviews-v1", "reviews", "v1"),
            ("reviews-v2", "reviews", "v2"),
            ("reviews-v3", "reviews", "v3"),
            ("ratings-v1", "ratings", "v1"),
            ("ratings-v2", "ratings", "v2"),
            ("productpage", "productpage", "v1"),
        ],
        &[
            ("reviews", "10.96.0.50"),
            ("ratings", "10.96.0.51"),
            ("productpage", "10.96.0.52"),
        ],
        &subsets("ratings", "default", &["v1", "v2"]),
    );
    // 003-04 (subsets, RANDOM with ROUND_ROBIN for v2) + 003-05 (10/80/10).
    let rules = format!("{}\n---\n{}", seed("003-04.yaml"), seed("003-05.yaml"));
    apply(&c, &rules, has("|v3|reviews.default"));
    let dump = wait_dump(&c, "cluster lb policies", |d| d["clusters"].is_array());
    let lb = |name: &str| {
        dump["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .map(|x| x["lb"].clone())
            .unwrap_or_else(|| panic!("no cluster {name}: {dump:#}"))
    };
    assert_eq!(
        lb("outbound|9080|v1|reviews.default.svc.cluster.local"),
        "RANDOM"
    );
    assert_eq!(
        lb("outbound|9080|v2|reviews.default.svc.cluster.local"),
        "ROUND_ROBIN"
    );
    let r = http(&c, "http://10.96.0.50:9080/", 500, &[]);
    assert_eq!(n(&r, "200", "statuses"), 500, "{r}");
    assert_share(n(&r, "v1", "versions"), 500, 0.1, "003-05 v1");
    assert_share(n(&r, "v2", "versions"), 500, 0.8, "003-05 v2");
    assert_share(n(&r, "v3", "versions"), 500, 0.1, "003-05 v3");

    // 003-03 names bookinfo.com, not a mesh service: reviews is unaffected.
    apply(
        &c,
        &format!("{}\n---\n{}", seed("003-04.yaml"), seed("003-03.yaml")),
        |routes, _| !routes.contains("|v2|reviews.default"),
    );
    let r = http(&c, "http://10.96.0.50:9080/reviews", 60, &[]);
    assert_eq!(n(&r, "200", "statuses"), 60, "{r}");
    assert!(
        n(&r, "v3", "versions") > 0,
        "003-03 must not pin reviews: {r}"
    );

    // 000-01: URI routes (exact and prefix) to productpage, bound to `mesh`.
    apply(&c, &seed("000-01.yaml"), has("/api/v1/products"));
    for path in [
        "/productpage",
        "/static/app.js",
        "/login",
        "/logout",
        "/api/v1/products/1",
    ] {
        let r = http(&c, &format!("http://10.96.0.52:9080{path}"), 3, &[]);
        assert_eq!(n(&r, "productpage", "pods"), 3, "000-01 {path}: {r}");
    }
    for path in ["/productpage/x", "/other"] {
        let r = http(&c, &format!("http://10.96.0.52:9080{path}"), 1, &[]);
        assert_eq!(
            n(&r, "404", "statuses"),
            1,
            "000-01 {path} must not route: {r}"
        );
    }

    // 003-06: two routes without match: the first (v1, 10 s timeout) wins.
    apply(&c, &seed("003-06.yaml"), has("ratings"));
    let r = http(&c, "http://10.96.0.51:9080/", 30, &[]);
    assert_eq!(n(&r, "v1", "versions"), 30, "003-06: {r}");

    // 003-08: a 5 s delay for 0.1 % of requests: 200 requests see at most
    // a couple (the rate itself is checked over 100k draws in unit tests).
    apply(&c, &seed("003-08.yaml"), has("ratings"));
    let r = http(&c, "http://10.96.0.51:9080/", 200, &["--concurrency", "4"]);
    assert_eq!(n(&r, "200", "statuses"), 200, "{r}");
    assert_eq!(n(&r, "v1", "versions"), 200, "{r}");
    let delayed = r["durations_ms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d.as_u64().unwrap() >= 4900)
        .count();
    assert!(delayed <= 2, "003-08: {delayed} of 200 delayed");
}

#[test]
fn httpbin_connection_pool_of_one_overflows_with_503_uo() {
    let c = mesh(
        "l7cb",
        "default",
        &[("httpbin", "httpbin", "v1")],
        &[("httpbin", "10.96.0.60")],
        "",
    );
    // 003-07: maxConnections 1, http1MaxPendingRequests 1,
    // maxRequestsPerConnection 1.
    apply(
        &c,
        &seed("003-07.yaml"),
        has("outbound|9080||httpbin.default"),
    );
    let r = http(
        &c,
        "http://10.96.0.60:9080/?delay_ms=300",
        30,
        &["--concurrency", "6"],
    );
    let ok = n(&r, "200", "statuses");
    let overflow = n(&r, "503", "statuses");
    assert!(ok >= 2, "some requests get through: {r}");
    assert!(overflow >= 5, "the pool of 1 must overflow: {r}");
    let metrics = c.waypoints[0].metrics_text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"503\"")
                && l.contains("response_flags=\"UO\"")),
        "no 503 UO in the waypoint's metrics:\n{metrics}"
    );
}

#[test]
fn service_a_canary_property_subsets_and_gateway_only_config() {
    let c = mesh(
        "l7svca",
        "default",
        &[
            ("service-a-v1", "service-a", "v1"),
            (
                "property-business-service-1",
                "property-business-service",
                "1.0",
            ),
            ("service-a-v2", "service-a", "v2"),
            (
                "property-business-service-2",
                "property-business-service",
                "1.1",
            ),
        ],
        &[
            ("service-a", "10.96.0.70"),
            ("property-business-service", "10.96.0.71"),
        ],
        // Subsets for service-a (the notes show the VirtualService only) and
        // a route to 004-03's subset v2.
        &(subsets("service-a", "default", &["v1", "v2"])
            + "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: property-business-service
  namespace: default
spec:
  hosts:
  - property-business-service
  http:
  - route:
    - destination:
        host: property-business-service
        subset: v2
"),
    );
    // 004-02 (80 / 20) and 004-03 (subsets by version "1.0" / "1.1"), with
    // the blocks that configure only an ingress gateway or an external
    // host (000-02 ServiceEntry, 003-01/02 and 004-01 Gateways and their
    // VirtualServices): accepted, and they leave mesh routing alone.
    let rules = [
        "004-02.yaml",
        "004-03.yaml",
        "000-02.yaml",
        "003-01.yaml",
        "003-02.yaml",
        "004-01.yaml",
    ]
    .map(seed)
    .join("\n---\n");
    apply(&c, &rules, has("|v2|property-business-service.default"));
    let r = http(&c, "http://10.96.0.70:9080/", 400, &[]);
    assert_eq!(n(&r, "200", "statuses"), 400, "{r}");
    assert_share(n(&r, "v1", "versions"), 400, 0.8, "004-02 v1");
    assert_share(n(&r, "v2", "versions"), 400, 0.2, "004-02 v2");
    let r = http(&c, "http://10.96.0.71:9080/", 30, &[]);
    assert_eq!(n(&r, "1.1", "versions"), 30, "004-03 subset v2: {r}");
    let dump = c.waypoints[0].config_dump().unwrap().to_string();
    assert!(
        !dump.contains("dashboard.test01-jeonj.io") && !dump.contains("ext-host.example.com"),
        "gateway-only VirtualServices must not reach the waypoint: {dump}"
    );
}
