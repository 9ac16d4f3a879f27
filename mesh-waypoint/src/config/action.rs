//! `RouteAction`, `RedirectAction` and `DirectResponseAction` → [`Action`].
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use envoy_types::pb::envoy::config::{
    core::v3::data_source::Specifier,
    route::v3::{
        redirect_action::{PathRewriteSpecifier, SchemeRewriteSpecifier},
        route_action::{hash_policy::PolicySpecifier, ClusterSpecifier, HostRewriteSpecifier},
        DirectResponseAction, RedirectAction, RetryPolicy as PbRetryPolicy, RouteAction,
    },
};

use super::{
    at,
    headers::HeaderEdits,
    matcher::compile_regex,
    percent::Fraction,
    table::{
        retry_on, Action, Clusters, Forward, HashPolicy, HashRule, Mirror, PathRedirect, Redirect,
        RetryPolicy, WeightedTarget,
    },
    unsupported::warn_once,
    wkt, ConfigError,
};

/// Envoy's default route timeout when `timeout` is unset.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn forward(a: &RouteAction, field: &str) -> Result<Action, ConfigError> {
    let clusters = match &a.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => Clusters::One(Arc::from(c.as_str())),
        Some(ClusterSpecifier::Cluster(_)) => {
            return Err(ConfigError::new(at(field, "cluster"), "empty cluster name"))
        }
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let wf = at(field, "weighted_clusters");
            let mut targets = Vec::new();
            for (i, c) in w.clusters.iter().enumerate() {
                let cf = format!("{wf}.clusters[{i}]");
                if c.name.is_empty() {
                    return Err(ConfigError::new(at(&cf, "name"), "empty cluster name"));
                }
                targets.push(WeightedTarget {
                    cluster: Arc::from(c.name.as_str()),
                    weight: c.weight.map_or(0, |w| w.value),
                    request_edits: HeaderEdits::compile(
                        &c.request_headers_to_add,
                        &c.request_headers_to_remove,
                        &at(&cf, "request_headers_to_add"),
                        &at(&cf, "request_headers_to_remove"),
                    )?,
                    response_edits: HeaderEdits::compile(
                        &c.response_headers_to_add,
                        &c.response_headers_to_remove,
                        &at(&cf, "response_headers_to_add"),
                        &at(&cf, "response_headers_to_remove"),
                    )?,
                    host_rewrite: c.host_rewrite_specifier.as_ref().map(|h| match h {
                        envoy_types::pb::envoy::config::route::v3::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(s) => s.clone(),
                    }),
                });
            }
            let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
            if total == 0 {
                return Err(ConfigError::new(at(&wf, "clusters"), "weights sum to 0"));
            }
            // Deprecated but still sent by some control planes; checked when set.
            #[allow(deprecated)]
            let total_weight = w.total_weight;
            if let Some(t) = total_weight {
                if u64::from(t.value) != total {
                    return Err(ConfigError::new(
                        at(&wf, "total_weight"),
                        format!("{} but the weights sum to {total}", t.value),
                    ));
                }
            }
            Clusters::Weighted(targets)
        }
        Some(_) => {
            return Err(ConfigError::new(
                field,
                "only cluster and weighted_clusters are supported",
            ))
        }
        None => return Err(ConfigError::new(field, "no cluster specifier")),
    };
    let timeout = match &a.timeout {
        None => Some(DEFAULT_ROUTE_TIMEOUT),
        Some(d) => {
            let d = wkt::duration(d, &at(field, "timeout"))?;
            (!d.is_zero()).then_some(d)
        }
    };
    let retry = a
        .retry_policy
        .as_ref()
        .map(|r| retry_policy(r, &at(field, "retry_policy")))
        .transpose()?;
    let regex_rewrite = a
        .regex_rewrite
        .as_ref()
        .map(|r| {
            let rf = at(field, "regex_rewrite");
            let pat = r
                .pattern
                .as_ref()
                .ok_or_else(|| ConfigError::new(at(&rf, "pattern"), "missing"))?;
            // A rewrite replaces every match, so the pattern is not anchored.
            let re = super::regex_budget::compile(
                &pat.regex,
                mesh_regex::Anchoring::Search,
                &at(&rf, "pattern.regex"),
            )?;
            Ok((re, rewrite_substitution(&r.substitution)))
        })
        .transpose()?;
    let host_rewrite = match &a.host_rewrite_specifier {
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => non_empty(h),
        Some(_) => {
            warn_once("RouteAction.host_rewrite (other than literal)", field);
            None
        }
        None => None,
    };
    let mut hash = Vec::new();
    for (i, h) in a.hash_policy.iter().enumerate() {
        let hf = format!("{field}.hash_policy[{i}]");
        let policy = match &h.policy_specifier {
            Some(PolicySpecifier::Header(x)) => {
                HashPolicy::Header(x.header_name.to_ascii_lowercase())
            }
            Some(PolicySpecifier::Cookie(c)) => HashPolicy::Cookie(c.name.clone()),
            Some(PolicySpecifier::ConnectionProperties(c)) if c.source_ip => HashPolicy::SourceIp,
            Some(PolicySpecifier::QueryParameter(q)) => HashPolicy::QueryParameter(q.name.clone()),
            Some(_) => {
                warn_once(
                    "hash_policy (filter_state / connection_properties without source_ip)",
                    &hf,
                );
                continue;
            }
            None => return Err(ConfigError::new(hf, "no policy specifier")),
        };
        hash.push(HashRule {
            policy,
            terminal: h.terminal,
        });
    }
    let mut mirrors = Vec::new();
    for (i, m) in a.request_mirror_policies.iter().enumerate() {
        let mf = format!("{field}.request_mirror_policies[{i}]");
        if m.cluster.is_empty() {
            return Err(ConfigError::new(
                at(&mf, "cluster"),
                "empty (cluster_header is not supported)",
            ));
        }
        let fraction = match m
            .runtime_fraction
            .as_ref()
            .and_then(|r| r.default_value.as_ref())
        {
            Some(p) => Fraction::from_proto(p, &at(&mf, "runtime_fraction.default_value"))?,
            None => Fraction::ALWAYS,
        };
        mirrors.push(Mirror {
            cluster: Arc::from(m.cluster.as_str()),
            fraction,
            shadow_suffix: !m.disable_shadow_host_suffix_append,
        });
    }
    #[allow(deprecated)]
    let cors = a.cors.is_some();
    if cors {
        warn_once("RouteAction.cors", field);
    }
    Ok(Action::Forward(Forward {
        clusters,
        timeout,
        retry,
        prefix_rewrite: non_empty(&a.prefix_rewrite),
        regex_rewrite,
        host_rewrite,
        hash,
        mirrors,
    }))
}

/// RE2 substitutions write `\1`; the regex crate wants `${1}`.
fn rewrite_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            ('$', _) => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

pub fn retry_policy(r: &PbRetryPolicy, field: &str) -> Result<RetryPolicy, ConfigError> {
    let mut bits = 0;
    for name in r
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match retry_on::parse(name) {
            Some(b) => bits |= b,
            None => warn_once(&format!("retry_on {name}"), &at(field, "retry_on")),
        }
    }
    let mut codes = Vec::new();
    for (i, c) in r.retriable_status_codes.iter().enumerate() {
        let c = u16::try_from(*c)
            .ok()
            .filter(|c| (100..600).contains(c))
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.retriable_status_codes[{i}]"),
                    format!("{c} is not an HTTP status"),
                )
            })?;
        codes.push(c);
    }
    let per_try_timeout = r
        .per_try_timeout
        .as_ref()
        .map(|d| wkt::duration(d, &at(field, "per_try_timeout")))
        .transpose()?
        .filter(|d| !d.is_zero());
    let mut previous_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        if p.name == PREVIOUS_HOSTS {
            previous_hosts = true;
        } else {
            warn_once(
                &format!("retry_host_predicate {}", p.name),
                &format!("{field}.retry_host_predicate[{i}]"),
            );
        }
    }
    let (mut base, mut max) = (Duration::from_millis(25), None);
    if let Some(b) = &r.retry_back_off {
        if let Some(d) = &b.base_interval {
            base = wkt::duration(d, &at(field, "retry_back_off.base_interval"))?;
            if base.is_zero() {
                return Err(ConfigError::new(
                    at(field, "retry_back_off.base_interval"),
                    "must be > 0",
                ));
            }
        }
        if let Some(d) = &b.max_interval {
            max = Some(wkt::duration(d, &at(field, "retry_back_off.max_interval"))?);
        }
    }
    Ok(RetryPolicy {
        retry_on: bits,
        retry_on_text: r.retry_on.clone(),
        num_retries: r.num_retries.map_or(1, |n| n.value),
        per_try_timeout,
        retriable_status_codes: codes,
        previous_hosts,
        backoff_base: base,
        backoff_max: max.unwrap_or(base * 10),
    })
}

pub fn redirect(r: &RedirectAction, field: &str) -> Result<Action, ConfigError> {
    let status = match r.response_code {
        0 => 301,
        1 => 302,
        2 => 303,
        3 => 307,
        4 => 308,
        other => {
            return Err(ConfigError::new(
                at(field, "response_code"),
                format!("unknown code {other}"),
            ))
        }
    };
    let scheme = match &r.scheme_rewrite_specifier {
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_string()),
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => non_empty(s),
        _ => None,
    };
    let path = match &r.path_rewrite_specifier {
        Some(PathRewriteSpecifier::PathRedirect(p)) => PathRedirect::Path(p.clone()),
        Some(PathRewriteSpecifier::PrefixRewrite(p)) => PathRedirect::Prefix(p.clone()),
        Some(PathRewriteSpecifier::RegexRewrite(rr)) => {
            let rf = at(field, "regex_rewrite");
            let pat = rr
                .pattern
                .as_ref()
                .ok_or_else(|| ConfigError::new(at(&rf, "pattern"), "missing"))?;
            let re = compile_regex(pat, &at(&rf, "pattern"))?;
            PathRedirect::Regex(re, rewrite_substitution(&rr.substitution))
        }
        None => PathRedirect::Keep,
    };
    let port = match r.port_redirect {
        0 => None,
        p => Some(u16::try_from(p).map_err(|_| {
            ConfigError::new(at(field, "port_redirect"), format!("{p} is not a port"))
        })?),
    };
    Ok(Action::Redirect(Redirect {
        scheme,
        host: non_empty(&r.host_redirect),
        port,
        path,
        status,
        strip_query: r.strip_query,
    }))
}

pub fn direct(d: &DirectResponseAction, field: &str) -> Result<Action, ConfigError> {
    if !(200..600).contains(&d.status) {
        return Err(ConfigError::new(
            at(field, "status"),
            format!("{} is not in [200, 600)", d.status),
        ));
    }
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => Bytes::new(),
        Some(Specifier::InlineString(s)) => Bytes::from(s.clone()),
        Some(Specifier::InlineBytes(b)) => Bytes::from(b.clone()),
        Some(_) => {
            return Err(ConfigError::new(
                at(field, "body"),
                "only inline_string / inline_bytes bodies are supported",
            ))
        }
    };
    Ok(Action::Direct {
        status: d.status as u16,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_converts_backrefs() {
        assert_eq!(rewrite_substitution(r"/v2/\1/x"), "/v2/${1}/x");
        assert_eq!(rewrite_substitution("$a"), "$$a");
    }

    #[test]
    fn retry_defaults_and_classes() {
        let r = retry_policy(
            &PbRetryPolicy {
                retry_on: "5xx,connect-failure,unavailable".into(),
                ..Default::default()
            },
            "rp",
        )
        .unwrap();
        assert_eq!(r.num_retries, 1);
        assert_eq!(
            r.retry_on,
            retry_on::X5XX | retry_on::CONNECT_FAILURE | retry_on::GRPC_UNAVAILABLE
        );
        assert_eq!(r.backoff_base, Duration::from_millis(25));
        assert_eq!(r.backoff_max, Duration::from_millis(250));
    }
}
