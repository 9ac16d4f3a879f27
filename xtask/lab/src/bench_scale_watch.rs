//! What `bench scale` observes: the agents' "mesh view updated" log lines
//! (logged, with the agent's own timestamp, right after the agent rebuilt
//! its mesh view from an xDS snapshot: the moment the data path sees the
//! new configuration) and mesh-control's `/debug/syncz` (every stream's
//! ACK of the current server version).
use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::PathBuf,
    time::{Duration, SystemTime},
};

/// One rebuilt view, as the agent logged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewLine {
    pub at: SystemTime,
    pub workloads: usize,
    pub services: usize,
    pub policies: usize,
}

impl ViewLine {
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.workloads, self.services, self.policies)
    }
}

/// Reads an agent's log as it grows.
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Every view line seen so far.
    pub views: Vec<ViewLine>,
}

impl LogTail {
    pub fn new(path: PathBuf) -> Self {
        LogTail {
            path,
            offset: 0,
            partial: String::new(),
            views: Vec::new(),
        }
    }

    /// Reads what was appended; returns how many view lines it held.
    pub fn poll(&mut self) -> usize {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return 0;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let mut bytes = Vec::new();
        let Ok(n) = file.read_to_end(&mut bytes) else {
            return 0;
        };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let before = self.views.len();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if let Some(v) = parse_view_line(&line) {
                self.views.push(v);
            }
        }
        self.views.len() - before
    }

    /// The first view after `since` with exactly these counts.
    pub fn first_with(&self, since: SystemTime, counts: (usize, usize, usize)) -> Option<ViewLine> {
        self.views
            .iter()
            .find(|v| v.at >= since && v.counts() == counts)
            .copied()
    }

    pub fn last(&self) -> Option<ViewLine> {
        self.views.last().copied()
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `2026-12-07T21:22:33.123456Z DEBUG mesh_agent::mesh: mesh view updated
/// workloads=10001 services=1000 policies=1000 connected=true`.
pub fn parse_view_line(line: &str) -> Option<ViewLine> {
    let line = strip_ansi(line);
    if !line.contains("mesh view updated") {
        return None;
    }
    let at = parse_rfc3339(line.split_whitespace().next()?)?;
    let field = |key: &str| -> Option<usize> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    Some(ViewLine {
        at,
        workloads: field("workloads")?,
        services: field("services")?,
        policies: field("policies")?,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` (UTC, as tracing writes it).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days from 1970-01-01 (civil calendar, proleptic Gregorian).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3_600 + mm * 60 + ss).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `/debug/syncz` reduced to what the bench needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syncz {
    pub server_version: u64,
    /// Streams (by node id) and whether every type of each is SYNCED.
    pub streams: Vec<(String, bool)>,
}

impl Syncz {
    pub fn parse(body: &str) -> anyhow::Result<Self> {
        let doc: serde_json::Value = serde_json::from_str(body)?;
        let server_version = doc["server_version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("/debug/syncz has no server_version: {doc}"))?;
        let streams = doc["proxies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let synced = p["types"]
                    .as_object()
                    .is_some_and(|t| !t.is_empty() && t.values().all(|t| t["status"] == "SYNCED"));
                (
                    p["node_id"].as_str().unwrap_or_default().to_string(),
                    synced,
                )
            })
            .collect();
        Ok(Syncz {
            server_version,
            streams,
        })
    }

    /// `expected` streams connected, all SYNCED at the server version.
    pub fn all_synced(&self, expected: usize) -> bool {
        self.streams.len() >= expected && self.streams.iter().all(|(_, s)| *s)
    }

    /// Streams whose node id starts with `prefix` all SYNCED (and at least one).
    pub fn synced(&self, prefix: &str) -> bool {
        let mut of = self.streams.iter().filter(|(n, _)| n.starts_with(prefix));
        let mut any = false;
        of.all(|(_, s)| {
            any = true;
            *s
        }) && any
    }
}

/// Milliseconds from `from` to `to` (negative if `to` is earlier).
pub fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_line() {
        let v = parse_view_line("2026-12-07T21:22:33.123456Z DEBUG mesh_agent::mesh: mesh view updated workloads=10001 services=1000 policies=999 connected=true\n").unwrap();
        assert_eq!(v.counts(), (10_001, 1_000, 999));
        let secs = v.at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        // date -u -d 2026-12-07T21:22:33Z +%s
        assert_eq!(secs.as_secs(), 1_796_678_553);
        assert_eq!(secs.subsec_micros(), 123_456);
        assert!(parse_view_line("2026-12-07T21:22:33Z INFO other line").is_none());
        let colored = "\x1b[2m2026-12-07T21:22:33.5Z\x1b[0m \x1b[34mDEBUG\x1b[0m mesh view updated workloads=1 services=2 policies=3";
        assert_eq!(parse_view_line(colored).unwrap().counts(), (1, 2, 3));
    }

    #[test]
    fn syncz() {
        let s = Syncz::parse(
            r#"{"server_version":"7","proxies":[
            {"node_id":"ztunnel~a","types":{"x":{"status":"SYNCED"}}},
            {"node_id":"waypoint~b","types":{"x":{"status":"STALE"}}}]}"#,
        )
        .unwrap();
        assert_eq!(s.server_version, 7);
        assert!(s.synced("ztunnel~"));
        assert!(!s.synced("waypoint~"));
        assert!(!s.all_synced(2));
        assert!(!s.synced("router~"));
    }
}
