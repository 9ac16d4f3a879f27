use std::time::Duration;

use super::parse_duration;
use crate::{
    model::routing::{AbortStatus, HashKey, SimpleLb, StringMatch},
    source::{load_files, Snapshot, SourceConfig},
};

fn load(yaml: &str) -> Result<Snapshot, Vec<String>> {
    load_files(
        &[("routing.yaml".to_string(), yaml.to_string())],
        &SourceConfig::default(),
    )
    .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn vs(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n  namespace: shop\nspec:\n  hosts: [reviews]\n{spec}")
}

fn dr(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: d\n  namespace: shop\nspec:\n  host: reviews\n{spec}")
}

/// The one problem of `yaml`, without the file and resource prefix.
fn error(yaml: &str) -> String {
    let problems = load(yaml).expect_err("must be rejected");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let prefix = if yaml.contains("kind: VirtualService") {
        "routing.yaml: VirtualService shop/r: "
    } else {
        "routing.yaml: DestinationRule shop/d: "
    };
    problems[0]
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}", problems[0]))
        .to_string()
}

#[test]
fn durations_as_istio_writes_them() {
    let ms = |n| Duration::from_millis(n);
    for (text, want) in [
        ("3s", ms(3000)),
        ("0.5s", ms(500)),
        ("100ms", ms(100)),
        ("1m", ms(60_000)),
        ("1h", ms(3_600_000)),
        ("1h30m", ms(5_400_000)),
        (".25s", ms(250)),
        ("0", Duration::ZERO),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for bad in ["", "3", "s", "3 s", "-1s", "3d", "1.s2"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn parses_every_virtual_service_field() {
    let yaml = vs(r#"  gateways: [mesh, istio-system/gw]
  exportTo: ["."]
  http:
  - name: main
    match:
    - uri: {regex: "^/api/v[0-9]+"}
      authority: {exact: shop.example.com}
      method: {exact: GET}
      headers: {end-user: {exact: jason}, x-present: {}}
      queryParams: {debug: {prefix: "1"}}
      withoutHeaders: {x-skip: {exact: "yes"}}
      port: 9080
      sourceLabels: {app: web}
      ignoreUriCase: true
      statPrefix: future
    route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 75
      headers:
        request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
        response: {remove: [server]}
    - destination: {host: reviews, subset: v2}
      weight: 25
    rewrite: {uri: /v2, authority: other}
    timeout: 0.5s
    retries: {attempts: 0, perTryTimeout: 100ms, retryOn: "5xx, 503, unavailable"}
    fault:
      delay: {fixedDelay: 1m, percent: 5}
      abort: {httpStatus: 503, percentage: {value: 12.5}}
    mirror: {host: shadow}
    mirrorPercentage: {value: 50}
    corsPolicy: {allowOrigins: [{exact: "*"}]}
    headers: {response: {set: {x-route: main}}}
  - redirect: {uri: /new, redirectCode: 308}
  - directResponse: {status: 404}
  tcp:
  - match: [{port: 3306}, {sourceLabels: {app: x}}]
    route: [{destination: {host: mysql, port: {number: 3306}}, weight: 100}]
  tls: [{match: [{sniHosts: [a.com]}], route: [{destination: {host: a.com}}]}]
  newSpecField: 1
"#);
    let snapshot = load(&yaml).unwrap();
    let vs = &snapshot.state.virtual_services[0];
    assert_eq!(vs.resource(), "VirtualService shop/r");
    assert_eq!(vs.gateways, ["mesh", "istio-system/gw"]);
    assert_eq!(vs.unknown, ["newSpecField"]);
    assert_eq!(vs.tls[0].matches[0].sni_hosts, ["a.com"]);
    let http = &vs.http[0];
    assert_eq!(http.name.as_deref(), Some("main"));
    let m = &http.matches[0];
    assert_eq!(m.uri, Some(StringMatch::Regex("^/api/v[0-9]+".into())));
    assert_eq!(m.headers["x-present"], StringMatch::Present);
    assert_eq!(m.query_params["debug"], StringMatch::Prefix("1".into()));
    assert_eq!(m.without_headers.len(), 1);
    assert_eq!((m.port, m.ignore_uri_case), (Some(9080), true));
    assert_eq!(m.source_labels["app"], "web");
    assert_eq!(m.unknown, ["statPrefix"]);
    let ops = http.route[0].headers.as_ref().unwrap();
    assert_eq!(ops.request.set["x-a"], "1");
    assert_eq!(ops.request.remove, ["x-c"]);
    assert_eq!(http.route[0].destination.port, Some(9080));
    assert_eq!(http.rewrite.as_ref().unwrap().uri.as_deref(), Some("/v2"));
    assert_eq!(http.timeout, Some(Duration::from_millis(500)));
    assert_eq!(http.retries.as_ref().unwrap().attempts, 0);
    let fault = http.fault.as_ref().unwrap();
    assert_eq!(fault.delay.as_ref().unwrap().percent, Some(5));
    let abort = fault.abort.as_ref().unwrap();
    assert_eq!(abort.status, AbortStatus::Http(503));
    assert_eq!(abort.percentage.unwrap().value(), 12.5);
    assert_eq!(http.mirror.as_ref().unwrap().host, "shadow");
    assert_eq!(http.mirror_percentage.unwrap().value(), 50.0);
    assert!(http.cors_policy.is_some());
    assert_eq!(
        vs.http[1].redirect.as_ref().unwrap().redirect_code,
        Some(308)
    );
    assert!(vs.http[2].direct_response.is_some());
    assert_eq!(vs.tcp[0].match_ports, [Some(3306), None]);
    assert_eq!(vs.tcp[0].unknown, ["sourceLabels"]);
    // Still kept raw for analyze and config_dump.
    assert_eq!(snapshot.raw.len(), 1);
}

#[test]
fn parses_every_destination_rule_field() {
    let yaml = dr(r#"  exportTo: ["*"]
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s}
        ringHash: {minimumRingSize: 1024}
      warmupDurationSecs: 10s
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s}}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 3, idleTimeout: 1h}
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveErrors: 2
      consecutiveGatewayErrors: 3
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 10
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: LEAST_CONN}
    tls: {mode: ISTIO_MUTUAL}
    tunnel: {protocol: CONNECT}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}
"#);
    let snapshot = load(&yaml).unwrap();
    let dr = &snapshot.state.destination_rules[0];
    assert_eq!(dr.resource(), "DestinationRule shop/d");
    let policy = dr.traffic_policy.as_ref().unwrap();
    let hash = policy.settings.load_balancer.as_ref().unwrap();
    let hash = hash.consistent_hash.as_ref().unwrap();
    assert_eq!(
        hash.key,
        HashKey::HttpCookie {
            name: "user".into(),
            path: None,
            ttl: Some(Duration::ZERO)
        }
    );
    assert_eq!(hash.ring_hash_minimum_ring_size, Some(1024));
    let pool = policy.settings.connection_pool.as_ref().unwrap();
    let tcp = pool.tcp.as_ref().unwrap();
    assert_eq!(tcp.connect_timeout, Some(Duration::from_millis(30)));
    assert!(tcp.other.contains_key("tcpKeepalive"));
    let http = pool.http.as_ref().unwrap();
    assert_eq!(http.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(http.max_retries, Some(3));
    let od = policy.settings.outlier_detection.as_ref().unwrap();
    // The deprecated alias counts gateway errors; the 5xx count is its own.
    assert_eq!(od.consecutive_5xx_errors, Some(7));
    assert_eq!(od.min_health_percent, Some(10));
    let (port, level) = &policy.port_level[0];
    assert_eq!(*port, 80);
    assert_eq!(
        level.load_balancer.as_ref().unwrap().simple,
        Some(SimpleLb::LeastRequest)
    );
    assert!(policy.settings.tls.is_some());
    assert_eq!(policy.unknown, ["tunnel"]);
    let subset_hash = dr.subsets[0].traffic_policy.as_ref().unwrap();
    let subset_hash = subset_hash.settings.load_balancer.as_ref().unwrap();
    let subset_hash = subset_hash.consistent_hash.as_ref().unwrap();
    assert_eq!(subset_hash.key, HashKey::UseSourceIp);
    assert_eq!(subset_hash.maglev_table_size, Some(65537));
}

#[test]
fn virtual_service_errors_name_the_field() {
    let route = |extra: &str| {
        vs(&format!(
            "  http:\n  - route:\n    - destination: {{host: reviews}}\n{extra}"
        ))
    };
    for (yaml, want) in [
        (
            vs("  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: -1\n    - destination: {host: reviews, subset: v2}\n      weight: 101\n"),
            "spec.http[0].route[0].weight: -1 must not be negative",
        ),
        (
            vs("  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n    - destination: {host: reviews, subset: v2}\n"),
            "spec.http[0].route: total destination weight is 0 (set weights on the destinations)",
        ),
        (
            route("    timeout: 3 seconds\n"),
            "spec.http[0].timeout: \"3 seconds\" is not a duration (unknown unit \" seconds\" (h, m, s, ms, us or ns))",
        ),
        (
            route("    timeout: 3\n"),
            "spec.http[0].timeout: expected a duration such as \"3s\" or \"100ms\", found 3",
        ),
        (
            route("    retries: {attempts: -2}\n"),
            "spec.http[0].retries.attempts: -2 must not be negative",
        ),
        (
            route("    retries: {attempts: 2, perTryTimeout: 10us}\n"),
            "spec.http[0].retries.perTryTimeout: \"10us\": a duration must be at least 1ms",
        ),
        (
            route("    retries: {attempts: 2, retryOn: \"5xx,sometimes\"}\n"),
            "spec.http[0].retries.retryOn: \"sometimes\" is not a retry policy",
        ),
        (
            route("    fault: {abort: {httpStatus: 700}}\n"),
            "spec.http[0].fault.abort.httpStatus: 700 is not an HTTP status 200-599",
        ),
        (
            route("    fault: {abort: {httpStatus: 503, percentage: {value: 120}}}\n"),
            "spec.http[0].fault.abort.percentage.value: percentage 120 is not in range 0-100",
        ),
        (
            route("    fault: {delay: {percent: 10}}\n"),
            "spec.http[0].fault.delay.fixedDelay: required field is missing",
        ),
        (
            route("    fault: {delay: {fixedDelay: 1s, percent: 101}}\n"),
            "spec.http[0].fault.delay.percent: 101 is more than 100",
        ),
        (
            route("    mirrorPercentage: {value: -1}\n"),
            "spec.http[0].mirrorPercentage.value: percentage -1 is not in range 0-100",
        ),
        (
            vs("  http:\n  - match:\n    - headers: {user-agent: {regex: \"(Firefox\"}}\n    route:\n    - destination: {host: reviews}\n"),
            "spec.http[0].match[0].headers.user-agent.regex: regex \"(Firefox\" is not a valid RE2 regex",
        ),
        (
            vs("  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: reviews}\n"),
            "spec.http[0].match[0].uri: only one of exact, prefix or regex may be set",
        ),
        (
            vs("  http:\n  - match:\n    - uri: {}\n    route:\n    - destination: {host: reviews}\n"),
            "spec.http[0].match[0].uri: needs one of exact, prefix or regex",
        ),
        (
            vs("  http:\n  - route:\n    - destination: {host: reviews, port: {number: 0}}\n"),
            "spec.http[0].route[0].destination.port.number: 0 is not a port number (1-65535)",
        ),
        (
            vs("  http:\n  - route:\n    - weight: 100\n"),
            "spec.http[0].route[0].destination: required field is missing",
        ),
        (
            vs("  http:\n  - route:\n    - destination: {host: reviews, subset: V_1}\n"),
            "spec.http[0].route[0].destination.subset: \"V_1\" is not a valid name",
        ),
        (
            vs("  http:\n  - timeout: 1s\n"),
            "spec.http[0]: needs one of route, redirect, directResponse or delegate",
        ),
        (
            route("    redirect: {uri: /x}\n"),
            "spec.http[0]: only one of route, redirect, directResponse and delegate may be set",
        ),
        (
            vs("  http:\n  - redirect: {redirectCode: 200, uri: /x}\n"),
            "spec.http[0].redirect.redirectCode: 200 is not a redirect code (3xx)",
        ),
        (
            route("    headers: {request: {set: {\"bad header\": x}}}\n"),
            "spec.http[0].headers.request.set.bad header: \"bad header\" is not a valid HTTP header name",
        ),
        (
            vs("  tcp:\n  - match: [{port: 70000}]\n    route: [{destination: {host: db}}]\n"),
            "spec.tcp[0].match[0].port: 70000 is not a port number (1-65535)",
        ),
        (
            "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec: {hosts: [a]}\n".to_string(),
            "apiVersion: networking.istio.io/v2 is not a VirtualService version",
        ),
    ] {
        let got = error(&yaml);
        assert!(got.starts_with(want), "got  {got}\nwant {want}\n{yaml}");
    }
}

#[test]
fn destination_rule_errors_name_the_field() {
    for (spec, want) in [
        (
            "  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n",
            "spec.trafficPolicy.loadBalancer.simple: \"FASTEST\" is not one of",
        ),
        (
            "  trafficPolicy:\n    loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}\n",
            "spec.trafficPolicy.loadBalancer: only one of simple and consistentHash may be set",
        ),
        (
            "  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}\n",
            "spec.trafficPolicy.loadBalancer.consistentHash: needs exactly one of",
        ),
        (
            "  trafficPolicy:\n    loadBalancer: {consistentHash: {httpCookie: {ttl: 1s}}}\n",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: required field is missing",
        ),
        (
            "  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: -1}}\n",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: -1 must not be negative",
        ),
        (
            "  trafficPolicy:\n    connectionPool: {http: {idleTimeout: forever}}\n",
            "spec.trafficPolicy.connectionPool.http.idleTimeout: \"forever\" is not a duration",
        ),
        (
            "  trafficPolicy:\n    outlierDetection: {baseEjectionTime: 3 min}\n",
            "spec.trafficPolicy.outlierDetection.baseEjectionTime: \"3 min\" is not a duration",
        ),
        (
            "  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 150}\n",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is more than 100",
        ),
        (
            "  trafficPolicy:\n    outlierDetection: {interval: 0s}\n",
            "spec.trafficPolicy.outlierDetection.interval: \"0s\": a duration must be at least 1ms",
        ),
        (
            "  trafficPolicy:\n    portLevelSettings:\n    - loadBalancer: {simple: RANDOM}\n",
            "spec.trafficPolicy.portLevelSettings[0].port.number: required field is missing",
        ),
        (
            "  trafficPolicy: {}\n",
            "spec.trafficPolicy: a traffic policy needs at least one field",
        ),
        (
            "  subsets:\n  - name: v1\n  - name: v1\n",
            "spec.subsets[1].name: duplicate subset name \"v1\" (also spec.subsets[0])",
        ),
        (
            "  subsets:\n  - labels: {version: v1}\n",
            "spec.subsets[0].name: required field is missing",
        ),
        (
            "  subsets:\n  - name: v1\n    labels: {version: 1.0}\n",
            "spec.subsets[0].labels.version: expected a string, found a number; quote it: \"1.0\"",
        ),
    ] {
        let got = error(&dr(spec));
        assert!(got.starts_with(want), "got  {got}\nwant {want}\n{spec}");
    }
    let no_host = "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec: {subsets: [{name: v1}]}\n";
    assert_eq!(error(no_host), "spec.host: required field is missing");
}

#[test]
fn one_bad_route_rejects_the_whole_load() {
    let good = dr("  subsets: [{name: v1}]\n");
    let bad = vs("  http:\n  - route:\n    - destination: {host: reviews}\n    timeout: soon\n");
    let problems = load(&format!("{good}---\n{bad}")).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("routing.yaml: VirtualService shop/r: spec.http[0].timeout"));
}

#[test]
fn weights_not_summing_to_100_are_relative_and_warned_about() {
    let yaml = vs("  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 1\n    - destination: {host: reviews, subset: v2}\n      weight: 3\n");
    let snapshot = load(&yaml).unwrap();
    assert!(
        snapshot
            .warnings
            .iter()
            .any(|w| w.contains("spec.http[0].route: total destination weight 4 != 100")),
        "{:#?}",
        snapshot.warnings
    );
}

/// A regex over the program-size budget (Istio's RE2 limit of 32768
/// instructions, see `mesh_regex::PROGRAM_SIZE_LIMIT`) is rejected with its
/// resource and field; one within it is kept.
#[test]
fn regexes_over_the_program_size_budget_are_rejected() {
    let header = |re: &str| {
        vs(&format!("  http:\n  - match:\n    - headers: {{x-id: {{regex: \"{re}\"}}}}\n    route:\n    - destination: {{host: reviews}}\n"))
    };
    load(&header("/api/v[0-9]+/.*")).unwrap();
    load(&header("[a-z]{100}")).unwrap();
    load(&header(r"/\\w{3,8}/[a-z0-9-]{1,63}")).unwrap();
    let big = error(&header("(.{100}){100}"));
    assert!(
        big.starts_with("spec.http[0].match[0].headers.x-id.regex: regex \"(.{100}){100}\" is over the program-size budget"),
        "{big}"
    );
    let rewrite = error(&vs(
        "  http:\n  - rewrite: {uriRegexRewrite: {match: \"(x{1000}){100}\", rewrite: /}}\n    route:\n    - destination: {host: reviews}\n",
    ));
    assert!(
        rewrite.starts_with(
            "spec.http[0].rewrite.uriRegexRewrite.match: regex \"(x{1000}){100}\" is over"
        ),
        "{rewrite}"
    );
}

/// Integers the API types as int32 are refused beyond it, not truncated.
#[test]
fn int32_fields_refuse_larger_numbers() {
    let weight = error(&vs(
        "  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 99999999999\n",
    ));
    assert!(
        weight.starts_with("spec.http[0].route[0].weight: 99999999999 is more than 2147483647"),
        "{weight}"
    );
    let max = error(&dr(
        "  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 99999999999}}\n",
    ));
    assert!(
        max.starts_with(
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: 99999999999 is more than"
        ),
        "{max}"
    );
}

/// A duration beyond what `google.protobuf.Duration` holds is refused,
/// not saturated.
#[test]
fn durations_beyond_a_protobuf_duration_are_refused() {
    let timeout = error(&vs(
        "  http:\n  - timeout: 99999999999999h\n    route:\n    - destination: {host: reviews}\n",
    ));
    assert!(
        timeout.starts_with(
            "spec.http[0].timeout: \"99999999999999h\" is longer than a protobuf Duration"
        ),
        "{timeout}"
    );
    load(&vs(
        "  http:\n  - timeout: 87600h\n    route:\n    - destination: {host: reviews}\n",
    ))
    .unwrap();
}
