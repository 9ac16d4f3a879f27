//! One VirtualService `http[].match[]` entry → Envoy `RouteMatch`: `uri`
//! exact → `path`, prefix → `prefix`, regex → `safe_regex` (RE2, full
//! match; checked when the VirtualService was loaded); `ignoreUriCase` →
//! `case_sensitive: false`; `headers` / `withoutHeaders` (inverted),
//! `method` / `authority` / `scheme` as `:method` / `:authority` /
//! `:scheme` headers; `queryParams`. `sourceLabels` / `sourceNamespace`
//! have no Envoy equivalent: they resolve to the source pods' IPs, carried
//! in `Route.metadata.filter_metadata["mesh"]["source_ips"]`.
use std::collections::HashMap;

use envoy_types::pb::envoy::{
    config::{
        core::v3::Metadata,
        route::v3::{
            header_matcher::HeaderMatchSpecifier, query_parameter_matcher,
            route_match::PathSpecifier, HeaderMatcher, QueryParameterMatcher, RouteMatch,
        },
    },
    r#type::matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher},
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::{pb, Cx};
use crate::model::routing::{HttpMatch, StringMatch};

/// Key of the route metadata mesh-waypoint reads (stock Envoy ignores it).
pub const MESH_METADATA: &str = "mesh";

/// A `RegexMatcher` with Envoy's default engine (RE2).
pub fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }
}

/// Istio's `StringMatch` as Envoy's; `None` for `Present` (not a string
/// match) and for an empty prefix, which Envoy refuses and which matches
/// any present value anyway.
pub fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = match m {
        StringMatch::Exact(s) => MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) if s.is_empty() => return None,
        StringMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(s) => MatchPattern::SafeRegex(regex(s)),
        StringMatch::Present => return None,
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

/// A header condition; `invert` for `withoutHeaders`.
pub fn header(name: &str, m: &StringMatch, invert: bool) -> HeaderMatcher {
    let specifier = match string_matcher(m) {
        Some(sm) => HeaderMatchSpecifier::StringMatch(sm),
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

/// The Envoy match of `m` (`None`: the route has no `match`, every
/// request), written in namespace `namespace`.
pub fn route_match(m: Option<&HttpMatch>) -> RouteMatch {
    let Some(m) = m else {
        return RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        };
    };
    let path = match &m.uri {
        None | Some(StringMatch::Present) => PathSpecifier::Prefix("/".into()),
        Some(StringMatch::Exact(p)) => PathSpecifier::Path(p.clone()),
        Some(StringMatch::Prefix(p)) => PathSpecifier::Prefix(p.clone()),
        Some(StringMatch::Regex(re)) => PathSpecifier::SafeRegex(regex(re)),
    };
    let mut headers = vec![];
    for (name, value) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(v) = value {
            headers.push(header(name, v, false));
        }
    }
    // Envoy holds header names lowercased; a capitalised name would never match.
    headers.extend(
        m.headers
            .iter()
            .map(|(n, v)| header(&n.to_ascii_lowercase(), v, false)),
    );
    headers.extend(
        m.without_headers
            .iter()
            .map(|(n, v)| header(&n.to_ascii_lowercase(), v, true)),
    );
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, v)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(v) {
                Some(sm) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(sm),
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m.ignore_uri_case.then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// The IPs of the pods `sourceLabels` / `sourceNamespace` of `m` select
/// (sorted), or `None` when `m` has neither.
pub fn source_ips(cx: &Cx<'_>, m: &HttpMatch) -> Option<Vec<String>> {
    if m.source_labels.is_empty() && m.source_namespace.is_none() {
        return None;
    }
    let mut ips: Vec<String> = cx
        .state
        .workloads
        .values()
        .filter(|w| {
            m.source_namespace
                .as_ref()
                .is_none_or(|ns| *ns == w.namespace)
        })
        .filter(|w| {
            m.source_labels
                .iter()
                .all(|(k, v)| w.labels.get(k) == Some(v))
        })
        .flat_map(|w| w.ips.iter().map(ToString::to_string))
        .collect();
    ips.sort();
    Some(ips)
}

/// `filter_metadata["mesh"] = {"source_ips": [..]}`.
pub fn source_metadata(ips: &[String]) -> Metadata {
    let list = pb::list_value(ips.iter().map(pb::string_value).collect());
    Metadata {
        filter_metadata: HashMap::from([(
            MESH_METADATA.to_string(),
            pb::structure([("source_ips".to_string(), list)]),
        )]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::HttpMatch;

    #[test]
    fn every_condition_of_a_match() {
        let m = HttpMatch {
            uri: Some(StringMatch::Regex("/api/v[0-9]+/.*".into())),
            ignore_uri_case: true,
            method: Some(StringMatch::Exact("GET".into())),
            headers: [("X-A".to_string(), StringMatch::Prefix(String::new()))].into(),
            without_headers: [("x-b".to_string(), StringMatch::Exact("1".into()))].into(),
            query_params: [("q".to_string(), StringMatch::Present)].into(),
            ..Default::default()
        };
        let r = route_match(Some(&m));
        assert_eq!(
            r.path_specifier,
            Some(PathSpecifier::SafeRegex(regex("/api/v[0-9]+/.*")))
        );
        assert_eq!(r.case_sensitive, Some(BoolValue { value: false }));
        let headers: Vec<(&str, bool, &HeaderMatchSpecifier)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.as_str(),
                    h.invert_match,
                    h.header_match_specifier.as_ref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            headers,
            [
                (
                    ":method",
                    false,
                    &HeaderMatchSpecifier::StringMatch(StringMatcher {
                        match_pattern: Some(MatchPattern::Exact("GET".into())),
                        ignore_case: false
                    })
                ),
                // An empty prefix is presence (Envoy refuses prefix "").
                ("x-a", false, &HeaderMatchSpecifier::PresentMatch(true)),
                (
                    "x-b",
                    true,
                    &HeaderMatchSpecifier::StringMatch(StringMatcher {
                        match_pattern: Some(MatchPattern::Exact("1".into())),
                        ignore_case: false
                    })
                ),
            ]
        );
        assert_eq!(
            r.query_parameters[0].query_parameter_match_specifier,
            Some(query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true))
        );
    }
}
