//! The scenarios of the differential test: which seed files are applied,
//! which route names the waypoint's virtual host must then show, and what
//! each probe's replies must be.
/// Requests per weighted-split probe and proxy.
pub const SPLIT_SAMPLES: usize = 400;
/// Requests per deterministic probe and proxy.
pub const EXACT_SAMPLES: usize = 20;

/// What the replies to one probe must show; keys are `x-pod` values
/// (`<pod>.<ns>`) or, for replies without one, `status <code>`.
pub enum Expect {
    /// Every reply has this key.
    Exactly(&'static str),
    /// Keys in these proportions (nothing else).
    Split(&'static [(&'static str, f64)]),
    /// Like `Exactly`, but every reply takes seconds (timeouts): few samples.
    ExactlySlow(&'static str),
}

impl Expect {
    pub fn samples(&self) -> usize {
        match self {
            Expect::Exactly(_) => EXACT_SAMPLES,
            Expect::Split(_) => SPLIT_SAMPLES,
            Expect::ExactlySlow(_) => 2,
        }
    }

    /// Whether the probe should answer from a pod: then it is retried
    /// until the proxy has the endpoints before being counted.
    pub fn answered_by_a_pod(&self) -> bool {
        match self {
            Expect::Exactly(k) => !k.starts_with("status "),
            Expect::Split(_) => true,
            Expect::ExactlySlow(_) => false,
        }
    }
}

pub struct Probe {
    pub host: &'static str,
    pub path: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    pub expect: Expect,
}

pub struct Scenario {
    pub name: &'static str,
    /// Seed files applied unmodified, plus test-owned YAML (`file`, text).
    pub seeds: &'static [&'static str],
    pub extra: &'static [(&'static str, &'static str)],
    /// Virtual host and the route names it must have once applied.
    pub vhost: &'static str,
    pub routes: &'static [&'static str],
    pub probes: &'static [Probe],
}

pub const REVIEWS: &str = "reviews.default.svc.cluster.local:9080";
pub const REVIEWS_TUTORIAL: &str = "reviews.tutorial.svc.cluster.local:9080";
pub const PRODUCTPAGE: &str = "productpage.default.svc.cluster.local:9080";
pub const ORDER_TUTORIAL: &str = "order.tutorial.svc.cluster.local:9080";

/// Subsets of `reviews` in `tutorial` (the 002-* seeds name subsets the
/// course defines elsewhere).
pub const TUTORIAL_DR: &str = "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: tutorial\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n  - name: v3\n    labels:\n      version: v3\n";

pub const FIREFOX: &[(&str, &str)] = &[(
    "baggage-user-agent",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
)];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "no VirtualService: one default route over every reviews pod",
        seeds: &[],
        extra: &[],
        vhost: REVIEWS,
        routes: &[],
        probes: &[Probe {
            host: "reviews:9080",
            path: "/reviews/1",
            headers: &[],
            expect: Expect::Split(&[
                ("reviews-v1.default", 1.0 / 3.0),
                ("reviews-v2.default", 1.0 / 3.0),
                ("reviews-v3.default", 1.0 / 3.0),
            ]),
        }],
    },
    Scenario {
        name: "002-02: weighted 30/70 (tutorial)",
        seeds: &["002-02.yaml"],
        extra: &[("20-tutorial-dr.yaml", TUTORIAL_DR)],
        vhost: REVIEWS_TUTORIAL,
        routes: &["tutorial/reviews/0"],
        probes: &[Probe {
            host: "reviews.tutorial:9080",
            path: "/reviews/1",
            headers: &[],
            expect: Expect::Split(&[("reviews-v1.tutorial", 0.3), ("reviews-v2.tutorial", 0.7)]),
        }],
    },
    Scenario {
        name: "002-04: header regex match (tutorial)",
        seeds: &["002-04.yaml"],
        extra: &[("20-tutorial-dr.yaml", TUTORIAL_DR)],
        vhost: REVIEWS_TUTORIAL,
        routes: &["tutorial/reviews/0", "tutorial/reviews/1"],
        probes: &[
            Probe {
                host: "reviews.tutorial:9080",
                path: "/reviews/1",
                headers: FIREFOX,
                expect: Expect::Exactly("reviews-v2.tutorial"),
            },
            Probe {
                host: "reviews.tutorial:9080",
                path: "/reviews/1",
                headers: &[("baggage-user-agent", "curl/8.5")],
                expect: Expect::Exactly("reviews-v1.tutorial"),
            },
            Probe {
                host: "reviews.tutorial:9080",
                path: "/reviews/1",
                headers: &[],
                expect: Expect::Exactly("reviews-v1.tutorial"),
            },
        ],
    },
    Scenario {
        name: "002-03: everything to v2 (tutorial)",
        seeds: &["002-03.yaml"],
        extra: &[("20-tutorial-dr.yaml", TUTORIAL_DR)],
        vhost: REVIEWS_TUTORIAL,
        routes: &["tutorial/reviews/0"],
        probes: &[Probe {
            host: "reviews.tutorial:9080",
            path: "/reviews/1",
            headers: FIREFOX,
            expect: Expect::Exactly("reviews-v2.tutorial"),
        }],
    },
    Scenario {
        name: "002-06: timeout 3s, 3 retries of 2s on 5xx (tutorial order)",
        seeds: &["002-06.yaml"],
        extra: &[],
        vhost: ORDER_TUTORIAL,
        routes: &["tutorial/vs-order-network-rule/0"],
        probes: &[
            Probe {
                host: "order.tutorial:9080",
                path: "/orders",
                headers: &[],
                expect: Expect::Exactly("order-v1.tutorial"),
            },
            // Every attempt fails: the last upstream 503 is passed through.
            Probe {
                host: "order.tutorial:9080",
                path: "/orders?status=503",
                headers: &[],
                expect: Expect::Exactly("status 503"),
            },
            // Each try times out after 2 s, the route after 3 s: 504.
            Probe {
                host: "order.tutorial:9080",
                path: "/orders?delay_ms=2500",
                headers: &[],
                expect: Expect::ExactlySlow("status 504"),
            },
        ],
    },
    Scenario {
        name: "003-04 + 003-05: DestinationRule subsets, weighted 10/80/10",
        seeds: &["003-04.yaml", "003-05.yaml"],
        extra: &[],
        vhost: REVIEWS,
        routes: &["default/reviews/0"],
        probes: &[Probe {
            host: "reviews:9080",
            path: "/reviews/1",
            headers: &[],
            expect: Expect::Split(&[
                ("reviews-v1.default", 0.1),
                ("reviews-v2.default", 0.8),
                ("reviews-v3.default", 0.1),
            ]),
        }],
    },
    Scenario {
        name: "000-01: URI exact/prefix matches, hosts \"*\", gateways incl. mesh",
        seeds: &["000-01.yaml"],
        extra: &[],
        vhost: PRODUCTPAGE,
        routes: &[
            "default/bookinfos/0",
            "default/bookinfos/0",
            "default/bookinfos/0",
            "default/bookinfos/0",
            "default/bookinfos/0",
        ],
        probes: &[
            Probe {
                host: "productpage:9080",
                path: "/productpage",
                headers: &[],
                expect: Expect::Exactly("productpage-v1.default"),
            },
            Probe {
                host: "productpage:9080",
                path: "/static/css/x.css",
                headers: &[],
                expect: Expect::Exactly("productpage-v1.default"),
            },
            Probe {
                host: "productpage:9080",
                path: "/api/v1/products/1",
                headers: &[],
                expect: Expect::Exactly("productpage-v1.default"),
            },
            Probe {
                host: "productpage:9080",
                path: "/productpage/extra",
                headers: &[],
                expect: Expect::Exactly("status 404"),
            },
            // `*` binds the VirtualService to reviews as well.
            Probe {
                host: "reviews:9080",
                path: "/login",
                headers: &[],
                expect: Expect::Exactly("productpage-v1.default"),
            },
            Probe {
                host: "reviews:9080",
                path: "/reviews/1",
                headers: &[],
                expect: Expect::Exactly("status 404"),
            },
        ],
    },
];
