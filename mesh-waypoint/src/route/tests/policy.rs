//! Fault injection and RBAC through the stack, with configs encoded as
//! the control plane sends them (`typed_per_filter_config` Anys).
use std::{collections::HashMap, sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::{
        core::v3::CidrRange,
        rbac::v3::{
            permission::Rule,
            principal::{Authenticated, Identifier},
            Permission, Policy, Principal, Rbac as RbacRulesPb,
        },
        route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher},
    },
    extensions::filters::{
        common::fault::v3::{fault_delay::FaultDelaySecifier, FaultDelay},
        http::{
            fault::v3::{fault_abort::ErrorType, FaultAbort, HttpFault},
            rbac::v3::{Rbac, RbacPerRoute},
        },
    },
    r#type::{
        matcher::v3::{path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher},
        v3::FractionalPercent,
    },
};
use http::StatusCode;
use mesh_xds::proto::wkt;
use prost::Message;

use crate::route::{
    dice::Dice,
    exchange::{Downstream, Exchange},
    fault::Fault,
    stage::{Stage, Step},
    testing::*,
};
use crate::{
    config::{fault::FaultConfig, rbac::RbacRules, HttpFilter},
    telemetry::Peer,
};

fn any<M: Message>(type_name: &str, m: &M) -> wkt::Any {
    wkt::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

fn percent(million: u32) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator: million,
        denominator: 2,
    })
}

fn delay(ms: i64, million: u32) -> HttpFault {
    HttpFault {
        delay: Some(FaultDelay {
            percentage: percent(million),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(wkt::Duration {
                seconds: ms / 1000,
                nanos: 0,
            })),
        }),
        ..Default::default()
    }
}

fn with_fault(f: &HttpFault) -> crate::config::ActiveConfig {
    let mut r = route("f", prefix("/"), to_cluster("c"));
    r.typed_per_filter_config = HashMap::from([(
        "envoy.filters.http.fault".to_string(),
        any("envoy.extensions.filters.http.fault.v3.HTTPFault", f),
    )]);
    active(
        &reviews(vec![r]),
        vec![
            HttpFilter::Fault(Arc::new(FaultConfig::default())),
            HttpFilter::Router,
        ],
    )
}

#[tokio::test(start_paused = true)]
async fn delay_5s_on_every_request() {
    let h = harness(&with_fault(&delay(5000, 1_000_000)), 1);
    let start = tokio::time::Instant::now();
    assert_eq!(h.get("/", &[]).await.0, StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(h.last_flags(), "DI");
}

#[tokio::test(start_paused = true)]
async fn delay_5s_at_0_1_percent_over_100k_requests() {
    let cfg = with_fault(&delay(5000, 1000));
    let route = cfg.table.vhosts[0].routes[0].clone();
    let vhost = cfg.table.vhosts[0].clone();
    let stage = Fault {
        config: Arc::new(FaultConfig::default()),
        dice: Arc::new(Dice::seeded(42)),
    };
    let n = 100_000;
    let mut delayed = 0;
    let start = tokio::time::Instant::now();
    for _ in 0..n {
        let ex = Exchange::new(Downstream::default());
        ex.set_route(vhost.clone(), route.clone());
        let req = http::Request::builder()
            .uri("/")
            .body(crate::body::empty())
            .unwrap();
        match stage.run(req, ex.clone()).await {
            Step::Next(_) => {}
            Step::Respond(_) => panic!("no abort configured"),
        }
        if ex.flags().contains(&"DI") {
            delayed += 1;
        }
    }
    // Expected 100, binomial sd ≈ 10.
    assert!((60..=140).contains(&delayed), "delayed {delayed} of {n}");
    assert_eq!(start.elapsed(), Duration::from_secs(5 * delayed));
}

#[tokio::test]
async fn abort_http_and_grpc() {
    let abort = |e: ErrorType| HttpFault {
        abort: Some(FaultAbort {
            percentage: percent(1_000_000),
            error_type: Some(e),
        }),
        ..Default::default()
    };
    let h = harness(&with_fault(&abort(ErrorType::HttpStatus(503))), 1);
    let (s, _, body) = h.get("/", &[]).await;
    assert_eq!(
        (s, &body[..]),
        (StatusCode::SERVICE_UNAVAILABLE, &b"fault filter abort"[..])
    );
    assert_eq!(h.last_flags(), "FI");
    assert!(h.upstream.calls().is_empty());
    let h = harness(&with_fault(&abort(ErrorType::GrpcStatus(14))), 1);
    let (s, hdrs, _) = h.get("/", &[("content-type", "application/grpc")]).await;
    assert_eq!(
        (s, hdrs["grpc-status"].to_str().unwrap()),
        (StatusCode::OK, "14")
    );
    // 0 %: never.
    let mut none = abort(ErrorType::HttpStatus(500));
    none.abort.as_mut().unwrap().percentage = percent(0);
    let h = harness(&with_fault(&none), 1);
    assert_eq!(h.get("/", &[]).await.0, StatusCode::OK);
}

fn path_is(p: &str) -> Permission {
    Permission {
        rule: Some(Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(StringMatcher {
                ignore_case: false,
                match_pattern: Some(MatchPattern::Prefix(p.into())),
            })),
        })),
    }
}

fn method_is(m: &str) -> Permission {
    Permission {
        rule: Some(Rule::Header(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(HeaderMatchSpecifier::ExactMatch(m.into())),
            ..Default::default()
        })),
    }
}

fn principal_is(p: &str) -> Principal {
    Principal {
        identifier: Some(Identifier::Authenticated(Authenticated {
            principal_name: Some(StringMatcher {
                ignore_case: false,
                match_pattern: Some(MatchPattern::Exact(p.into())),
            }),
        })),
    }
}

fn rules(
    action: i32,
    name: &str,
    perms: Vec<Permission>,
    principals: Vec<Principal>,
) -> RbacRulesPb {
    RbacRulesPb {
        action,
        policies: HashMap::from([(
            name.to_string(),
            Policy {
                permissions: perms,
                principals,
                ..Default::default()
            },
        )]),
        audit_logging_options: None,
    }
}

fn compiled(r: &RbacRulesPb) -> Option<Arc<RbacRules>> {
    crate::config::rbac::compile_filter(
        &Rbac {
            rules: Some(r.clone()),
            ..Default::default()
        },
        "t",
    )
    .unwrap()
    .map(Arc::new)
}

const SLEEP: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const OTHER: &str = "spiffe://cluster.local/ns/other/sa/x";

async fn as_peer(h: &Harness, principal: &str, method: &str, path: &str) -> StatusCode {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "reviews:9080")
        .body(crate::body::empty())
        .unwrap();
    req.extensions_mut().insert(Downstream {
        peer: Peer {
            principal: Some(principal.into()),
            ip: Some("10.244.0.5".parse().unwrap()),
        },
        ..Default::default()
    });
    h.send(req).await.0
}

#[tokio::test]
async fn rbac_deny_then_allow_in_istio_order() {
    // DENY POST /admin for anyone; ALLOW only sleep.
    let deny = rules(
        1,
        "ns[default]-policy[deny-admin]-rule[0]",
        vec![Permission {
            rule: Some(Rule::AndRules(
                envoy_types::pb::envoy::config::rbac::v3::permission::Set {
                    rules: vec![path_is("/admin"), method_is("POST")],
                },
            )),
        }],
        vec![Principal {
            identifier: Some(Identifier::Any(true)),
        }],
    );
    let allow = rules(
        0,
        "ns[default]-policy[allow-sleep]-rule[0]",
        vec![Permission {
            rule: Some(Rule::Any(true)),
        }],
        vec![principal_is(SLEEP)],
    );
    let cfg = active(
        &reviews(vec![route("r", prefix("/"), to_cluster("c"))]),
        vec![
            HttpFilter::Rbac {
                name: "envoy.filters.http.rbac".into(),
                rules: compiled(&deny),
            },
            HttpFilter::Rbac {
                name: "envoy.filters.http.rbac.allow".into(),
                rules: compiled(&allow),
            },
            HttpFilter::Router,
        ],
    );
    let h = harness(&cfg, 1);
    assert_eq!(as_peer(&h, SLEEP, "GET", "/admin").await, StatusCode::OK);
    assert_eq!(
        as_peer(&h, SLEEP, "POST", "/admin/x").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.last_flags(), "RBAC");
    assert_eq!(as_peer(&h, OTHER, "GET", "/").await, StatusCode::FORBIDDEN);
    assert_eq!(h.upstream.calls().len(), 1);
}

#[tokio::test]
async fn rbac_per_route_override_and_source_ip() {
    // Filter-level: allow nothing; the route overrides with "source in 10.244.0.0/16".
    let nothing = RbacRulesPb {
        action: 0,
        policies: HashMap::new(),
        audit_logging_options: None,
    };
    let by_ip = rules(
        0,
        "ip",
        vec![Permission {
            rule: Some(Rule::Any(true)),
        }],
        vec![Principal {
            identifier: Some(Identifier::RemoteIp(CidrRange {
                address_prefix: "10.244.0.0".into(),
                prefix_len: Some(wkt::UInt32Value { value: 16 }),
            })),
        }],
    );
    let mut open = route("open", prefix("/open"), to_cluster("c"));
    open.typed_per_filter_config = HashMap::from([(
        "envoy.filters.http.rbac".to_string(),
        any(
            "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
            &RbacPerRoute {
                rbac: Some(Rbac {
                    rules: Some(by_ip),
                    ..Default::default()
                }),
            },
        ),
    )]);
    let cfg = active(
        &reviews(vec![open, route("closed", prefix("/"), to_cluster("c"))]),
        vec![
            HttpFilter::Rbac {
                name: "envoy.filters.http.rbac".into(),
                rules: compiled(&nothing),
            },
            HttpFilter::Router,
        ],
    );
    let h = harness(&cfg, 1);
    assert_eq!(as_peer(&h, OTHER, "GET", "/open").await, StatusCode::OK);
    assert_eq!(
        as_peer(&h, OTHER, "GET", "/closed").await,
        StatusCode::FORBIDDEN
    );
}
