//! Request path normalisation, before route matching and RBAC see the
//! path, and what the upstream receives (Envoy normalises the `:path`
//! header itself, so filters, routes and the upstream agree on one path).
//!
//! What it does, in Envoy's order:
//! 1. RFC 3986 §6.2.2 case and percent-encoding normalisation: escapes of
//!    unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, other
//!    escapes get upper-case hex (Envoy `normalize_path: true`, Istio's
//!    `BASE`);
//! 2. RFC 3986 §5.2.4 removal of `.` and `..` segments (same setting);
//! 3. runs of `/` merged into one (Envoy `merge_slashes: true`, Istio's
//!    `MERGE_SLASHES`).
//!
//! Escaped slashes and backslashes (`%2F`, `%5C`, either case) and a
//! literal `\` are refused: a backend that decodes them would see segments
//! the policy never saw. Envoy's `path_with_escaped_slashes_action:
//! REJECT_REQUEST` does the same; Istio's `DECODE_AND_MERGE_SLASHES`
//! instead redirects to the decoded path, which the waypoint, sitting in
//! the middle of a connection the client did not address to it, cannot
//! usefully do. Malformed escapes (`%zz`, a trailing `%`) are refused too.
//! The query string is never touched.
use std::borrow::Cow;

use http::{uri::PathAndQuery, Uri};

/// Why a path cannot be served (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {path:?} contains an escaped slash or backslash")]
    EscapedSlash { path: String },
    #[error("path {path:?} contains a backslash")]
    Backslash { path: String },
    #[error("path {path:?} contains a malformed percent-escape")]
    BadEscape { path: String },
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Step 1: decode escaped unreserved characters, upper-case other escapes.
fn normalize_escapes(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.contains('\\') {
        return Err(PathError::Backslash { path: path.into() });
    }
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Copy the run up to the next escape (keeps multi-byte chars).
            let end = path[i..].find('%').map_or(bytes.len(), |n| i + n);
            out.push_str(&path[i..end]);
            i = end;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape { path: path.into() });
        };
        let decoded = hi << 4 | lo;
        match decoded {
            b'/' | b'\\' => return Err(PathError::EscapedSlash { path: path.into() }),
            b if is_unreserved(b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
        i += 3;
    }
    Ok(Cow::Owned(out))
}

/// Step 2: RFC 3986 §5.2.4 `remove_dot_segments` for an absolute path.
fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    let has_dots = path
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !has_dots {
        return Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => out.push(s),
        }
    }
    let mut result = format!("/{}", out.join("/"));
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    Cow::Owned(result)
}

/// Step 3: merge runs of `/`.
fn merge_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c != '/' || !out.ends_with('/') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The normalised form of `path` (no query). Paths that are not absolute
/// (`*` of `OPTIONS *`) are returned as they are.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    let escaped = normalize_escapes(path)?;
    let dotless = remove_dot_segments(&escaped);
    let merged = merge_slashes(&dotless);
    Ok(if merged == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(merged.into_owned())
    })
}

/// `uri` with its path normalised; `None` when it is already normal.
pub fn normalize_uri(uri: &Uri) -> Result<Option<Uri>, PathError> {
    let path = uri.path();
    let normal = match normalize(path)? {
        Cow::Borrowed(_) => return Ok(None),
        Cow::Owned(p) => p,
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = uri.clone().into_parts();
    // Only unreserved characters were decoded, so the result still parses.
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query.as_str()).map_err(|_| PathError::BadEscape {
            path: path.to_string(),
        })?,
    );
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| PathError::BadEscape {
            path: path.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn rfc3986_remove_dot_segments_examples() {
        // §5.2.4 and the §5.4 abnormal examples, as absolute paths.
        assert_eq!(n("/a/b/c/./../../g"), "/a/g");
        assert_eq!(n("/mid/content=5/../6"), "/mid/6");
        assert_eq!(n("/b/c/d;p/../../../../g"), "/g");
        assert_eq!(n("/b/c/./g"), "/b/c/g");
        assert_eq!(n("/b/c/."), "/b/c/");
        assert_eq!(n("/b/c/./"), "/b/c/");
        assert_eq!(n("/b/c/.."), "/b/");
        assert_eq!(n("/b/c/../"), "/b/");
        assert_eq!(n("/b/c/../g"), "/b/g");
        assert_eq!(n("/b/c/../.."), "/");
        assert_eq!(n("/b/c/../../g"), "/g");
        assert_eq!(n("/./g"), "/g");
        assert_eq!(n("/../g"), "/g");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/."), "/");
        // Dots inside segments are names, not dot segments.
        assert_eq!(n("/g."), "/g.");
        assert_eq!(n("/.g"), "/.g");
        assert_eq!(n("/g.."), "/g..");
        assert_eq!(n("/..g"), "/..g");
        assert_eq!(n("/b/c/./../g;x=1/./y"), "/b/g;x=1/y");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%41%7a%30%2D%2e%5F%7E"), "/Az0-._~");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/a%3fb%3Bc"), "/a%3Fb%3Bc");
        assert_eq!(n("/%e2%82%ac"), "/%E2%82%AC");
        // Decoded dots become dot segments.
        assert_eq!(n("/x/%2E%2E/admin"), "/admin");
        assert_eq!(n("/x/%2e/admin"), "/x/admin");
        // %25 stays an escape: no double decoding.
        assert_eq!(n("/%2561dmin"), "/%2561dmin");
    }

    #[test]
    fn slashes_are_merged_after_dot_removal() {
        assert_eq!(n("//admin"), "/admin");
        assert_eq!(n("///a//b///"), "/a/b/");
        assert_eq!(n("/x//../admin"), "/x/admin");
        assert_eq!(n("//../admin"), "/admin");
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for p in ["/", "/a/b", "/a/b/", "/a%20b", "*", "/über"] {
            assert!(
                matches!(normalize(p).unwrap(), Cow::Borrowed(x) if x == p),
                "{p}"
            );
        }
    }

    #[test]
    fn escaped_slashes_backslashes_and_bad_escapes_are_refused() {
        for p in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb", "/%2F..%2Fadmin"] {
            assert!(
                matches!(normalize(p), Err(PathError::EscapedSlash { .. })),
                "{p}"
            );
        }
        assert!(matches!(
            normalize("/a\\..\\admin"),
            Err(PathError::Backslash { .. })
        ));
        for p in ["/a%", "/a%2", "/a%zz", "/%g1"] {
            assert!(
                matches!(normalize(p), Err(PathError::BadEscape { .. })),
                "{p}"
            );
        }
    }

    #[test]
    fn uri_keeps_scheme_authority_and_query() {
        let uri: Uri = "http://reviews:9080/a/./b//c?x=/../y&z=%2F"
            .parse()
            .unwrap();
        assert_eq!(
            normalize_uri(&uri).unwrap().unwrap().to_string(),
            "http://reviews:9080/a/b/c?x=/../y&z=%2F"
        );
        let origin: Uri = "/%61dmin?q".parse().unwrap();
        assert_eq!(
            normalize_uri(&origin).unwrap().unwrap().to_string(),
            "/admin?q"
        );
        assert_eq!(normalize_uri(&"/ok?a=b".parse().unwrap()).unwrap(), None);
    }
}
