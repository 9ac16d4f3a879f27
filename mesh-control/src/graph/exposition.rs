//! A parser of Prometheus's text exposition format (version 0.0.4, what
//! `/stats/prometheus` serves): sample lines `name{label="value",…} value
//! [timestamp]`; comments, `# HELP` and `# TYPE` lines are skipped. A line
//! that does not parse is skipped and counted, so one odd series does not
//! hide the rest of a target.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// Label pairs in line order, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

/// The samples of a text body, and how many lines were not understood.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub samples: Vec<Sample<'a>>,
    pub bad_lines: usize,
}

/// Parses `text`, keeping the samples whose metric name `keep` accepts.
pub fn parse<'a>(text: &'a str, keep: impl Fn(&str) -> bool) -> Parsed<'a> {
    let mut out = Parsed::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_ascii_whitespace())
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if !keep(name) {
            continue;
        }
        match parse_line(line, name_end) {
            Some((labels, value)) => out.samples.push(Sample {
                name,
                labels,
                value,
            }),
            None => out.bad_lines += 1,
        }
    }
    out
}

type Labels<'a> = Vec<(&'a str, String)>;

fn parse_line(line: &str, name_end: usize) -> Option<(Labels<'_>, f64)> {
    if line[..name_end].is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = vec![];
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional timestamp, nothing after it.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some((labels, value))
}

/// Parses `name="value",…}`; returns the labels and what follows `}`.
fn parse_labels(mut s: &str) -> Option<(Labels<'_>, &str)> {
    let mut labels = vec![];
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim();
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                c => value.push(c),
            }
        };
        labels.push((name, value));
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series as mesh-waypoint exports it (label order and values as
    /// scraped from the running demo).
    const WAYPOINT: &str = r#"# HELP istio_requests_total Requests.
# TYPE istio_requests_total counter
istio_requests_total{response_code="200",grpc_response_status="",reporter="waypoint",source_workload="productpage-v1",source_workload_namespace="default",destination_service_name="reviews",destination_workload="reviews-v2",connection_security_policy="mutual_tls"} 88
istio_request_duration_milliseconds_bucket{le="+Inf",response_code="200",reporter="waypoint"} 473
istio_request_duration_milliseconds_sum{response_code="200"} 12.5
mesh_waypoint_up 1 1700000000000
"#;

    #[test]
    fn parses_istio_series() {
        let p = parse(WAYPOINT, |_| true);
        assert_eq!(p.bad_lines, 0);
        assert_eq!(p.samples.len(), 4);
        let s = &p.samples[0];
        assert_eq!(s.name, "istio_requests_total");
        assert_eq!(s.value, 88.0);
        assert_eq!(s.labels[1], ("grpc_response_status", String::new()));
        assert_eq!(s.labels[4], ("source_workload_namespace", "default".into()));
        assert_eq!(p.samples[1].labels[0], ("le", "+Inf".into()));
        assert_eq!(p.samples[3].name, "mesh_waypoint_up");
        assert_eq!(p.samples[3].value, 1.0);
    }

    #[test]
    fn keeps_only_wanted_names() {
        let p = parse(WAYPOINT, |n| n == "istio_requests_total");
        assert_eq!(p.samples.len(), 1);
    }

    #[test]
    fn escapes_trailing_comma_and_special_values() {
        let text = "a{x=\"q\\\"uote\\\\ \\n\",y=\"2\",} +Inf\nb NaN\nc{} -1.5e3\n";
        let p = parse(text, |_| true);
        assert_eq!(p.bad_lines, 0);
        assert_eq!(p.samples[0].labels[0].1, "q\"uote\\ \n");
        assert_eq!(p.samples[0].labels[1], ("y", "2".into()));
        assert!(p.samples[0].value.is_infinite());
        assert!(p.samples[1].value.is_nan());
        assert_eq!(p.samples[2].value, -1500.0);
    }

    #[test]
    fn bad_lines_are_counted_not_fatal() {
        let text = "a{x=\"unterminated} 1\nb{x=1} 2\nc 1 2 3\nd notanumber\ne 5\n";
        let p = parse(text, |_| true);
        assert_eq!(p.bad_lines, 4);
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.samples[0].name, "e");
    }
}
