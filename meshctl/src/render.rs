//! Output: aligned tables that fit a terminal (100 columns by default, so a
//! table never wraps), or the data itself as JSON or YAML (`-o json|yaml`)
//! for scripts.
use clap::ValueEnum;

/// Width tables are fitted to.
pub const WIDTH: usize = 100;
/// Gap between columns.
const GAP: usize = 2;
/// A column is never squeezed below this (or its header).
const MIN_COLUMN: usize = 6;

/// `-o` of every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// Aligned columns for people (istioctl's `short`).
    #[default]
    #[value(alias = "short")]
    Table,
    /// The data as JSON (as the admin endpoint serves it).
    Json,
    /// The data as YAML.
    Yaml,
}

/// Prints `data` as JSON or YAML; `None` for [`Output::Table`].
pub fn data(value: &serde_json::Value, output: Output) -> Option<String> {
    match output {
        Output::Table => None,
        Output::Json => Some(serde_json::to_string_pretty(value).unwrap_or_default() + "\n"),
        Output::Yaml => Some(serde_yaml::to_string(value).unwrap_or_default()),
    }
}

/// A table of text cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns squeezed (to their floor) before the widest-first rule.
    squeeze_first: Vec<usize>,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `max` characters by replacing its middle with an ellipsis:
/// names and identities differ at both ends (`reviews-v1-…-x2x2x`,
/// `cluster.local/…/sa/reviews`), so both are kept.
pub fn ellipsize(s: &str, max: usize) -> String {
    let len = width(s);
    if len <= max {
        return s.to_string();
    }
    if max < 3 {
        return truncate(s, max);
    }
    let keep = max - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let chars: Vec<char> = s.chars().collect();
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[len - tail..]);
    out
}

/// `s` cut to `max` characters, the last one an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: vec![],
            squeeze_first: vec![],
        }
    }

    /// Squeeze column `index` before any other when the table is too wide
    /// (free-text columns whose full value is elsewhere, e.g. `-o json`).
    pub fn squeeze_first(mut self, index: usize) -> Self {
        self.squeeze_first.push(index);
        self
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The column widths after squeezing the widest columns until the line
    /// fits `max_width` (or nothing can shrink further).
    fn widths(&self, max_width: usize) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(h)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let floor: Vec<usize> = self
            .headers
            .iter()
            .map(|h| width(h).max(MIN_COLUMN))
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        while total(&widths) > max_width {
            let first = self
                .squeeze_first
                .iter()
                .copied()
                .find(|&i| i < widths.len() && widths[i] > floor[i]);
            let widest = first.or_else(|| {
                (0..widths.len())
                    .filter(|&i| widths[i] > floor[i])
                    .max_by_key(|&i| widths[i])
            });
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
        widths
    }

    /// The table as lines fitting `max_width` columns; cut cells lose their
    /// middle to `…`.
    pub fn render(&self, max_width: usize) -> String {
        let widths = self.widths(max_width);
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| {
                    let cell = ellipsize(cell, w);
                    let pad = w - width(&cell);
                    format!("{cell}{}", " ".repeat(pad))
                })
                .collect();
            out.push_str(cells.join(&" ".repeat(GAP)).trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` word-wrapped to `max` columns; the first line starts with
/// `first`, the others with `rest` (a hanging indent).
pub fn wrap(text: &str, max: usize, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && width(&line) + 1 + width(word) > max {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// `1.5KiB`, `12B`, `3.0MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A point in time relative to `now`: `in 23h`, `in 5m`, `3d ago`, `now`.
pub fn relative(target_unix: i64, now_unix: i64) -> String {
    let delta = target_unix - now_unix;
    let span = |secs: i64| -> String {
        let secs = secs.unsigned_abs();
        match secs {
            0..=59 => format!("{secs}s"),
            60..=3599 => format!("{}m", secs / 60),
            3600..=172_799 => format!("{}h", secs / 3600),
            _ => format!("{}d", secs / 86_400),
        }
    };
    match delta {
        0 => "now".into(),
        d if d > 0 => format!("in {}", span(d)),
        d => format!("{} ago", span(d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_fit() {
        let mut t = Table::new(["NAME", "VALUE"]);
        t.row(["a", "1"]);
        t.row(["longer-name", "22"]);
        assert_eq!(
            t.render(100),
            "NAME         VALUE\na            1\nlonger-name  22\n"
        );
        let mut t = Table::new(["A", "B"]);
        t.row(["x".repeat(30), "y".repeat(10)]);
        let out = t.render(20);
        let line = out.lines().nth(1).unwrap();
        assert_eq!(width(line), 20, "{out}");
        assert_eq!(line, "xxxx…xxxx  yyyy…yyyy");
        let mut t = Table::new(["A", "B"]).squeeze_first(1);
        t.row(["x".repeat(30), "y".repeat(10)]);
        assert_eq!(
            t.render(40).lines().nth(1).unwrap(),
            format!("{}  yyyy…yyy", "x".repeat(30))
        );
        let out = t.render(30);
        let line = out.lines().nth(1).unwrap();
        assert!(line.ends_with("  yyy…yy"), "{line}");
        assert_eq!(width(line), 30);
    }

    #[test]
    fn units() {
        assert_eq!(bytes(12), "12B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0MiB");
        assert_eq!(relative(100 + 23 * 3600 + 59, 100), "in 23h");
        assert_eq!(relative(100 + 300, 100), "in 5m");
        assert_eq!(relative(100, 100 + 3 * 86_400), "3d ago");
        assert_eq!(relative(5, 5), "now");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(ellipsize("reviews-v1-7f99cc4496-x2x2x", 12), "review…x2x2x");
        assert_eq!(ellipsize("short", 12), "short");
        assert_eq!(
            wrap("one two three four", 12, "  x: ", "     "),
            "  x: one two\n     three\n     four\n"
        );
    }
}
