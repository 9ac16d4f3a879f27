//! The L4 benchmark's figures and how they are printed: per path (direct,
//! this mesh, ztunnel) one value per repeat; each printed figure is the
//! median over repeats, each ratio the median of the per-repeat ratios
//! (the paths of one repeat ran back to back), with its spread (min–max
//! around the median, in % of it).

/// The paths compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Direct,
    Mesh,
    Ztunnel,
}

impl Path {
    pub const ALL: [Path; 3] = [Path::Direct, Path::Mesh, Path::Ztunnel];

    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Mesh => "mesh",
            Path::Ztunnel => "ztunnel",
        }
    }
}

/// A median and the range it came from.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        })
    }

    /// The larger distance from the median to either end, in % of it.
    pub fn pm_percent(&self) -> f64 {
        if self.median == 0.0 {
            return 0.0;
        }
        (self.max - self.median).max(self.median - self.min) / self.median.abs() * 100.0
    }
}

/// One figure of every path, one value per repeat (`NAN`: not measured).
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub values: [Vec<f64>; 3],
}

impl Row {
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            values: Default::default(),
        }
    }

    pub fn push(&mut self, path: Path, value: f64) {
        self.values[path as usize].push(value);
    }

    pub fn median(&self, path: Path) -> Option<Spread> {
        Spread::of(&self.values[path as usize])
    }

    /// `a / b` per repeat, then its median and spread.
    pub fn ratio(&self, a: Path, b: Path) -> Option<Spread> {
        let per_repeat: Vec<f64> = self.values[a as usize]
            .iter()
            .zip(&self.values[b as usize])
            .map(|(x, y)| x / y)
            .collect();
        Spread::of(&per_repeat)
    }
}

/// The ratios printed, in column order.
pub const RATIOS: [(Path, Path); 3] = [
    (Path::Mesh, Path::Direct),
    (Path::Ztunnel, Path::Direct),
    (Path::Mesh, Path::Ztunnel),
];

fn cell(s: Option<Spread>, digits: usize) -> String {
    s.map_or_else(|| "not given".into(), |s| format!("{:.digits$}", s.median))
}

fn ratio_cell(s: Option<Spread>) -> String {
    s.map_or_else(
        || "not given".into(),
        |s| format!("{:.2}x ±{:.0}%", s.median, s.pm_percent()),
    )
}

/// Prints `rows` as a table: the median of each path, then each ratio
/// with its spread.
pub fn print_table(title: &str, rows: &[Row]) {
    println!();
    println!("{title}");
    println!(
        "  {:<34} {:>10} {:>10} {:>10}   {:>13} {:>14} {:>13}",
        "", "direct", "mesh", "ztunnel", "mesh/direct", "ztunnel/direct", "mesh/ztunnel"
    );
    for r in rows {
        let digits = if r.label.contains("Gbit") { 2 } else { 1 };
        let [d, m, z] = Path::ALL.map(|p| cell(r.median(p), digits));
        let [a, b, c] = RATIOS.map(|(x, y)| ratio_cell(r.ratio(x, y)));
        println!(
            "  {:<34} {d:>10} {m:>10} {z:>10}   {a:>13} {b:>14} {c:>13}",
            r.label
        );
    }
}

/// The largest spread of any ratio in `rows`, and where.
pub fn worst_spread(rows: &[Row]) -> Option<(f64, String)> {
    rows.iter()
        .flat_map(|r| {
            RATIOS.iter().filter_map(move |(a, b)| {
                r.ratio(*a, *b).map(|s| {
                    (
                        s.pm_percent(),
                        format!("{} {}/{}", r.label.trim(), a.name(), b.name()),
                    )
                })
            })
        })
        .max_by(|x, y| x.0.total_cmp(&y.0))
}

pub fn verdict(ok: bool) -> &'static str {
    crate::bench::verdict(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_the_median_of_per_repeat_ratios() {
        let mut r = Row::new("x");
        for (d, m) in [(10.0, 5.0), (20.0, 8.0), (10.0, 6.0)] {
            r.push(Path::Direct, d);
            r.push(Path::Mesh, m);
        }
        let s = r.ratio(Path::Mesh, Path::Direct).unwrap();
        assert_eq!((s.min, s.median, s.max), (0.4, 0.5, 0.6));
        assert!((s.pm_percent() - 20.0).abs() < 1e-9);
        assert!(r.ratio(Path::Mesh, Path::Ztunnel).is_none());
    }
}
