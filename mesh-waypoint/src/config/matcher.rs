//! String, header and query-parameter matchers, compiled once (regexes
//! anchored for RE2's full-match semantics), and the read-only view of a
//! request they are evaluated on.
use std::borrow::Cow;

use envoy_types::pb::envoy::{
    config::route::v3::{
        header_matcher::HeaderMatchSpecifier,
        query_parameter_matcher::QueryParameterMatchSpecifier, HeaderMatcher as PbHeaderMatcher,
        QueryParameterMatcher as PbQueryMatcher,
    },
    r#type::matcher::v3::{
        string_matcher::MatchPattern, RegexMatcher, StringMatcher as PbStringMatcher,
    },
};
use http::{HeaderMap, Method};
use regex::Regex;

use super::{at, ConfigError};

/// What matchers read from a request: the pseudo-headers and the headers.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// `:authority` / `Host`.
    pub authority: &'a str,
    /// `:path` including the query string.
    pub path: &'a str,
    pub scheme: &'a str,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// The path without `?query`.
    pub fn path_only(&self) -> &'a str {
        self.path.split_once('?').map_or(self.path, |(p, _)| p)
    }

    pub fn query(&self) -> &'a str {
        self.path.split_once('?').map_or("", |(_, q)| q)
    }

    /// A header's value as Envoy sees it: pseudo-headers by name, several
    /// values of one header joined with `,`.
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        match name {
            ":method" => Some(Cow::Borrowed(self.method.as_str())),
            ":authority" | "host" => Some(Cow::Borrowed(self.authority)),
            ":path" => Some(Cow::Borrowed(self.path)),
            ":scheme" => Some(Cow::Borrowed(self.scheme)),
            _ => {
                let mut values = self
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok());
                let first = values.next()?;
                match values.next() {
                    None => Some(Cow::Borrowed(first)),
                    Some(second) => {
                        let mut joined = format!("{first},{second}");
                        for v in values {
                            joined.push(',');
                            joined.push_str(v);
                        }
                        Some(Cow::Owned(joined))
                    }
                }
            }
        }
    }

    /// The first value of query parameter `name` (`Some("")` when present
    /// without a value).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query().split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

/// Compiles an RE2 pattern for a full match.
pub fn compile_regex(r: &RegexMatcher, field: &str) -> Result<Regex, ConfigError> {
    compile_pattern(&r.regex, &at(field, "regex"))
}

pub(crate) fn compile_pattern(pattern: &str, field: &str) -> Result<Regex, ConfigError> {
    super::regex_budget::compile(pattern, mesh_regex::Anchoring::Full, field)
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

/// Envoy's `StringMatcher`.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    pattern: Pattern,
    ignore_case: bool,
}

impl StringMatcher {
    pub fn exact(s: &str) -> Self {
        StringMatcher {
            pattern: Pattern::Exact(s.to_string()),
            ignore_case: false,
        }
    }

    pub fn compile(m: &PbStringMatcher, field: &str) -> Result<Self, ConfigError> {
        let ignore_case = m.ignore_case;
        let fold = |s: &str| {
            if ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        let pattern = match &m.match_pattern {
            Some(MatchPattern::Exact(s)) => Pattern::Exact(fold(s)),
            Some(MatchPattern::Prefix(s)) => Pattern::Prefix(fold(s)),
            Some(MatchPattern::Suffix(s)) => Pattern::Suffix(fold(s)),
            Some(MatchPattern::Contains(s)) => Pattern::Contains(fold(s)),
            Some(MatchPattern::SafeRegex(r)) => {
                Pattern::Regex(compile_regex(r, &at(field, "safe_regex"))?)
            }
            Some(MatchPattern::Custom(_)) => {
                return Err(ConfigError::new(
                    at(field, "custom"),
                    "custom string matchers are not supported",
                ))
            }
            None => {
                return Err(ConfigError::new(
                    field,
                    "string matcher has no match_pattern",
                ))
            }
        };
        Ok(StringMatcher {
            pattern,
            ignore_case,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        let folded;
        let v = if self.ignore_case && !matches!(self.pattern, Pattern::Regex(_)) {
            folded = value.to_ascii_lowercase();
            folded.as_str()
        } else {
            value
        };
        match &self.pattern {
            Pattern::Exact(s) => v == s,
            Pattern::Prefix(s) => v.starts_with(s.as_str()),
            Pattern::Suffix(s) => v.ends_with(s.as_str()),
            Pattern::Contains(s) => v.contains(s.as_str()),
            Pattern::Regex(r) => r.is_match(v),
        }
    }

    /// Short text for dumps: `=v`, `^=v`, `$=v`, `*=v`, `~=re`.
    pub fn describe(&self) -> String {
        let (op, v) = match &self.pattern {
            Pattern::Exact(s) => ("=", s.clone()),
            Pattern::Prefix(s) => ("^=", s.clone()),
            Pattern::Suffix(s) => ("$=", s.clone()),
            Pattern::Contains(s) => ("*=", s.clone()),
            Pattern::Regex(r) => {
                let s = r.as_str();
                ("~=", s[4..s.len() - 2].to_string())
            }
        };
        format!("{op}{v}")
    }
}

#[derive(Debug, Clone)]
enum HeaderCheck {
    String(StringMatcher),
    Present(bool),
    Range { start: i64, end: i64 },
}

/// Envoy's route `HeaderMatcher` (also used by RBAC and fault).
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    name: String,
    check: HeaderCheck,
    invert: bool,
    missing_as_empty: bool,
}

impl HeaderMatcher {
    pub fn compile(m: &PbHeaderMatcher, field: &str) -> Result<Self, ConfigError> {
        if m.name.is_empty() {
            return Err(ConfigError::new(at(field, "name"), "header name is empty"));
        }
        let s = |p: MatchPattern| PbStringMatcher {
            ignore_case: false,
            match_pattern: Some(p),
        };
        let check = match &m.header_match_specifier {
            Some(HeaderMatchSpecifier::ExactMatch(v)) => HeaderCheck::String(
                StringMatcher::compile(&s(MatchPattern::Exact(v.clone())), field)?,
            ),
            Some(HeaderMatchSpecifier::PrefixMatch(v)) => HeaderCheck::String(
                StringMatcher::compile(&s(MatchPattern::Prefix(v.clone())), field)?,
            ),
            Some(HeaderMatchSpecifier::SuffixMatch(v)) => HeaderCheck::String(
                StringMatcher::compile(&s(MatchPattern::Suffix(v.clone())), field)?,
            ),
            Some(HeaderMatchSpecifier::ContainsMatch(v)) => HeaderCheck::String(
                StringMatcher::compile(&s(MatchPattern::Contains(v.clone())), field)?,
            ),
            Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => HeaderCheck::String(StringMatcher {
                pattern: Pattern::Regex(compile_regex(r, &at(field, "safe_regex_match"))?),
                ignore_case: false,
            }),
            Some(HeaderMatchSpecifier::StringMatch(sm)) => {
                HeaderCheck::String(StringMatcher::compile(sm, &at(field, "string_match"))?)
            }
            Some(HeaderMatchSpecifier::PresentMatch(p)) => HeaderCheck::Present(*p),
            Some(HeaderMatchSpecifier::RangeMatch(r)) => HeaderCheck::Range {
                start: r.start,
                end: r.end,
            },
            // No specifier: Envoy treats it as "present".
            None => HeaderCheck::Present(true),
        };
        Ok(HeaderMatcher {
            name: m.name.to_ascii_lowercase(),
            check,
            invert: m.invert_match,
            missing_as_empty: m.treat_missing_header_as_empty,
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let value = req.header(&self.name);
        let value = match value {
            Some(v) => v,
            None if self.missing_as_empty => Cow::Borrowed(""),
            // Envoy: a missing header matches only a (non-)presence check.
            None => {
                return match self.check {
                    HeaderCheck::Present(p) => p == self.invert,
                    _ => false,
                }
            }
        };
        let hit = match &self.check {
            HeaderCheck::String(s) => s.matches(&value),
            HeaderCheck::Present(p) => *p,
            HeaderCheck::Range { start, end } => {
                value.parse::<i64>().is_ok_and(|n| n >= *start && n < *end)
            }
        };
        hit != self.invert
    }

    pub fn describe(&self) -> String {
        let check = match &self.check {
            HeaderCheck::String(s) => s.describe(),
            HeaderCheck::Present(true) => " present".into(),
            HeaderCheck::Present(false) => " absent".into(),
            HeaderCheck::Range { start, end } => format!(" in [{start},{end})"),
        };
        let not = if self.invert { "!" } else { "" };
        format!("header {not}{}{check}", self.name)
    }
}

/// Envoy's `QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub struct QueryMatcher {
    name: String,
    /// None: presence only.
    value: Option<StringMatcher>,
}

impl QueryMatcher {
    pub fn compile(m: &PbQueryMatcher, field: &str) -> Result<Self, ConfigError> {
        if m.name.is_empty() {
            return Err(ConfigError::new(
                at(field, "name"),
                "query parameter name is empty",
            ));
        }
        let value = match &m.query_parameter_match_specifier {
            Some(QueryParameterMatchSpecifier::StringMatch(s)) => {
                Some(StringMatcher::compile(s, &at(field, "string_match"))?)
            }
            Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => None,
        };
        Ok(QueryMatcher {
            name: m.name.clone(),
            value,
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match (req.query_param(&self.name), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(m)) => m.matches(v),
        }
    }

    pub fn describe(&self) -> String {
        match &self.value {
            Some(m) => format!("query {}{}", self.name, m.describe()),
            None => format!("query {} present", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;

    fn view<'a>(headers: &'a HeaderMap, path: &'a str) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            authority: "reviews:9080",
            path,
            scheme: "http",
            headers,
        }
    }

    fn regex(re: &str) -> MatchPattern {
        MatchPattern::SafeRegex(RegexMatcher {
            regex: re.into(),
            engine_type: None,
        })
    }

    fn header(name: &str, p: MatchPattern, invert: bool) -> HeaderMatcher {
        HeaderMatcher::compile(
            &PbHeaderMatcher {
                name: name.into(),
                invert_match: invert,
                header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(PbStringMatcher {
                    ignore_case: false,
                    match_pattern: Some(p),
                })),
                ..Default::default()
            },
            "h",
        )
        .unwrap()
    }

    #[test]
    fn regex_is_a_full_match() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "Mozilla/5.0 Firefox/120".parse().unwrap());
        assert!(header("user-agent", regex(".*Firefox.*"), false).matches(&view(&h, "/")));
        assert!(!header("user-agent", regex("Firefox"), false).matches(&view(&h, "/")));
        h.insert("user-agent", "curl/8".parse().unwrap());
        assert!(!header("user-agent", regex(".*Firefox.*"), false).matches(&view(&h, "/")));
    }

    #[test]
    fn missing_header_and_invert_follow_envoy() {
        let h = HeaderMap::new();
        let v = view(&h, "/");
        assert!(!header("end-user", MatchPattern::Exact("jason".into()), false).matches(&v));
        // A missing header never matches a value check, inverted or not.
        assert!(!header("end-user", MatchPattern::Exact("jason".into()), true).matches(&v));
        let mut h2 = HeaderMap::new();
        h2.insert("end-user", "bob".parse().unwrap());
        assert!(
            header("end-user", MatchPattern::Exact("jason".into()), true).matches(&view(&h2, "/"))
        );
    }

    #[test]
    fn pseudo_headers_and_query() {
        let h = HeaderMap::new();
        let v = view(&h, "/p?a=1&b=&c=x");
        assert_eq!(v.header(":method").unwrap(), "GET");
        assert_eq!(v.header(":authority").unwrap(), "reviews:9080");
        assert_eq!(v.path_only(), "/p");
        assert_eq!(v.query_param("b"), Some(""));
        assert_eq!(v.query_param("z"), None);
        let q = QueryMatcher::compile(
            &PbQueryMatcher {
                name: "c".into(),
                query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::StringMatch(
                    PbStringMatcher {
                        ignore_case: true,
                        match_pattern: Some(MatchPattern::Exact("X".into())),
                    },
                )),
            },
            "q",
        )
        .unwrap();
        assert!(q.matches(&v));
    }

    #[test]
    fn bad_regex_names_the_field() {
        let err = HeaderMatcher::compile(
            &PbHeaderMatcher {
                name: "x".into(),
                header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(PbStringMatcher {
                    ignore_case: false,
                    match_pattern: Some(regex("(")),
                })),
                ..Default::default()
            },
            "routes[0].match.headers[1]",
        )
        .unwrap_err();
        assert_eq!(
            err.field,
            "routes[0].match.headers[1].string_match.safe_regex.regex"
        );
    }

    #[test]
    fn multi_values_join_with_comma() {
        let mut h = HeaderMap::new();
        h.append("x", "a".parse().unwrap());
        h.append("x", "b".parse().unwrap());
        assert_eq!(view(&h, "/").header("x").unwrap(), "a,b");
    }
}
