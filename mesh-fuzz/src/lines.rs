//! The text framing the request-shaped targets share, so that corpus files
//! stay readable and editable: `\n`-separated lines, the first few fixed
//! (method, authority, …), then `name: value` header lines.
use http::{HeaderMap, HeaderName, HeaderValue};

/// The input as text (lossy: invalid UTF-8 becomes U+FFFD, which still
/// reaches the parsers as odd but valid text) split into lines.
pub fn split(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

/// `name: value` lines as a header map; lines that are not a valid header
/// are skipped (the HTTP stack would have refused them before our code).
pub fn headers<'a>(lines: impl IntoIterator<Item = &'a String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim_start()),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}
