//! The table `bench l7` prints: medians over the runs per path, the
//! fixed-rate cost (vCPU per 1 k req/s, RSS), and each mesh-waypoint /
//! Envoy ratio as a median with its spread. A ratio is taken within one
//! run (both proxies measured back to back), then summarised over runs.
use super::{Measured, Pair, Proto, Row, PROTOS};
use crate::{bench::verdict, lab_args::L7Args};

/// The middle of repeated figures and how far they stray from it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    /// The larger distance from the median to the smallest or largest
    /// figure, in % of the median: "stable to ±pct %".
    pct: f64,
}

/// None when `xs` holds no number (NaN figures are left out).
fn spread(xs: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let (min, max) = (v[0], v[n - 1]);
    let pct = if median == 0.0 {
        0.0
    } else {
        100.0 * (max - median).max(median - min) / median.abs()
    };
    Some(Spread {
        median,
        min,
        max,
        pct,
    })
}

fn med(xs: impl IntoIterator<Item = f64>) -> f64 {
    spread(xs).map_or(f64::NAN, |s| s.median)
}

/// Per run of `pair`, `f(ours) / f(envoy)`.
fn per_run_ratio<'a>(
    pair: &'a Pair,
    p: Proto,
    f: impl Fn(&Row) -> Option<f64> + 'a,
) -> impl Iterator<Item = f64> + 'a {
    pair.ours
        .rows(p)
        .iter()
        .zip(pair.envoy.rows(p))
        .map(move |(w, e)| match (f(w), f(e)) {
            (Some(w), Some(e)) if e > 0.0 => w / e,
            _ => f64::NAN,
        })
}

/// Requests per CPU-second (the plain rate when the CPU time is unknown).
fn per_core(r: &Row) -> Option<f64> {
    Some(r.rps_per_cpu.unwrap_or(r.max_rps))
}

fn mb(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |m| format!("{m:.1}"))
}

/// `1.52x (1.48-1.60, stable to ±5 %)`.
fn ratio_text(s: Option<Spread>) -> String {
    s.map_or_else(
        || "-".into(),
        |s| {
            format!(
                "{:.2}x ({:.2}-{:.2}, stable to ±{:.0} %)",
                s.median, s.min, s.max, s.pct
            )
        },
    )
}

pub(super) fn print(opts: &L7Args, direct: &Measured, pairs: &[Pair]) {
    println!();
    println!(
        "bench l7: {} run(s) of {:.0} s per measurement, proxies of a pair alternating; one worker pinned to one CPU; open loop at {:.0}% of each run's Envoy max and at a fixed {} rps",
        opts.runs,
        opts.duration,
        opts.load * 100.0,
        opts.rate
    );
    println!("  medians over the runs (failed = transport errors + open-loop requests still unsent at the end, summed)");
    println!(
        "  {:<32} {:<9} {:>10} {:>12} {:>10} {:>9} {:>9} {:>7}   {:>8} {:>8}",
        "path",
        "protocol",
        "max rps",
        "rps/CPU-s",
        "offered",
        "p50 us",
        "p99 us",
        "failed",
        "RSS idle",
        "RSS load"
    );
    let mut paths = vec![direct];
    for pair in pairs {
        paths.extend([&pair.envoy, &pair.ours]);
    }
    for path in &paths {
        for p in PROTOS {
            let rows = path.rows(p);
            let per_cpu = spread(rows.iter().filter_map(|r| r.rps_per_cpu));
            println!(
                "  {:<32} {:<9} {:>10.0} {:>12} {:>10.0} {:>9.0} {:>9.0} {:>7}   {:>8} {:>8}",
                path.name,
                p.label(),
                med(rows.iter().map(|r| r.max_rps)),
                per_cpu.map_or_else(|| "-".into(), |s| format!("{:.0}", s.median)),
                med(rows.iter().map(|r| r.offered)),
                med(rows.iter().map(|r| r.p50_us)),
                med(rows.iter().map(|r| r.p99_us)),
                rows.iter().map(|r| r.errors).sum::<u64>(),
                mb(path.rss_idle_mb),
                mb(path.rss_load_mb),
            );
        }
    }
    println!(
        "  at the fixed {} rps (open loop; vCPU = proxy utime + stime per second of the run):",
        opts.rate
    );
    println!(
        "  {:<32} {:<9} {:>10} {:>16} {:>9} {:>12}",
        "path", "protocol", "answered", "vCPU per 1k rps", "p99 us", "RSS MB"
    );
    for path in paths.iter().skip(1) {
        for p in PROTOS {
            let fixed: Vec<_> = path.rows(p).iter().filter_map(|r| r.fixed).collect();
            println!(
                "  {:<32} {:<9} {:>10.0} {:>16.3} {:>9.0} {:>12.1}",
                path.name,
                p.label(),
                med(fixed.iter().map(|f| f.rps)),
                med(fixed.iter().map(|f| f.vcpu_per_krps())),
                med(fixed.iter().map(|f| f.p99_us)),
                fixed.iter().map(|f| f.rss_mb).fold(f64::NAN, f64::max),
            );
        }
    }
    for pair in pairs {
        for p in PROTOS {
            let d = med(direct.rows(p).iter().map(|r| r.max_rps));
            let e = med(pair.envoy.rows(p).iter().map(|r| r.max_rps));
            if e > 0.8 * d {
                println!(
                    "  note ({}, {}): Envoy reached {:.0}% of the direct rate: the client side may be the limit, ratios understate the proxies' difference",
                    pair.role.label(),
                    p.label(),
                    100.0 * e / d
                );
            }
        }
    }
    for pair in pairs {
        print_ratios(opts, pair);
    }
}

/// The targets hold when they hold in every run.
fn print_ratios(opts: &L7Args, pair: &Pair) {
    println!(
        "  {} / {}, {} (ratio within each run; median, min-max over {} run(s)):",
        pair.ours.name,
        pair.envoy.name,
        pair.role.label(),
        opts.runs
    );
    for p in PROTOS {
        let rps = spread(per_run_ratio(pair, p, per_core));
        let p99 = spread(per_run_ratio(pair, p, |r| Some(r.p99_us)));
        let cost = spread(per_run_ratio(pair, p, |r| {
            r.fixed.map(|f| f.vcpu_per_krps())
        }));
        println!(
            "    {:<9} rps/core {}  target >= 1.50x {}",
            p.label(),
            ratio_text(rps),
            verdict(rps.is_some_and(|s| s.min >= 1.5))
        );
        println!(
            "    {:<9} p99 at the same load {}  target <= 0.70x {}",
            "",
            ratio_text(p99),
            verdict(p99.is_some_and(|s| s.max <= 0.7))
        );
        let vcpu = |m: &Measured| {
            med(m
                .rows(p)
                .iter()
                .filter_map(|r| r.fixed.map(|f| f.vcpu_per_krps())))
        };
        println!(
            "    {:<9} vCPU per 1k rps at {} rps: {:.3} vs {:.3}, {}",
            "",
            opts.rate,
            vcpu(&pair.ours),
            vcpu(&pair.envoy),
            ratio_text(cost)
        );
    }
    let rss = pair.ours.rss_load_mb.unwrap_or(f64::NAN);
    println!(
        "    RSS under load {rss:.1} MB ({} {}), target <= 25 MB {}",
        pair.envoy.name,
        mb(pair.envoy.rss_load_mb),
        verdict(rss <= 25.0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_l7::{Fixed, Role};

    #[test]
    fn spread_is_the_larger_side_in_percent_of_the_median() {
        let s = spread([1.0, 1.1, 0.8]).unwrap();
        assert_eq!((s.median, s.min, s.max), (1.0, 0.8, 1.1));
        assert!((s.pct - 20.0).abs() < 1e-9, "{s:?}");
        assert_eq!(spread([2.0, 4.0]).unwrap().median, 3.0);
        assert_eq!(spread([f64::NAN, 5.0]).unwrap().median, 5.0);
        assert_eq!(spread(Vec::new()), None);
        assert_eq!(spread([0.0]).unwrap().pct, 0.0);
    }

    fn row(per_cpu: f64, p99: f64, vcpu: f64) -> Row {
        Row {
            max_rps: 1.0,
            rps_per_cpu: Some(per_cpu),
            p99_us: p99,
            fixed: Some(Fixed {
                rps: 5000.0,
                vcpu,
                p99_us: p99,
                rss_mb: 10.0,
            }),
            ..Row::default()
        }
    }

    #[test]
    fn ratios_pair_the_runs() {
        let mut envoy = Measured::new("envoy");
        let mut ours = Measured::new("ours");
        envoy.runs[0] = vec![row(20000.0, 1000.0, 0.5), row(10000.0, 2000.0, 0.5)];
        ours.runs[0] = vec![row(40000.0, 600.0, 0.25), row(30000.0, 1000.0, 0.5)];
        let pair = Pair {
            role: Role::Waypoint,
            envoy,
            ours,
        };
        let rps: Vec<f64> = per_run_ratio(&pair, Proto::H1, per_core).collect();
        assert_eq!(rps, vec![2.0, 3.0]);
        let p99: Vec<f64> = per_run_ratio(&pair, Proto::H1, |r| Some(r.p99_us)).collect();
        assert_eq!(p99, vec![0.6, 0.5]);
        let cost: Vec<f64> =
            per_run_ratio(&pair, Proto::H1, |r| r.fixed.map(|f| f.vcpu_per_krps())).collect();
        assert_eq!(cost, vec![0.5, 1.0]);
        // No CPU time: the plain rate.
        let mut no_cpu = row(1.0, 1.0, 1.0);
        no_cpu.rps_per_cpu = None;
        no_cpu.max_rps = 7.0;
        assert_eq!(per_core(&no_cpu), Some(7.0));
        assert!(per_run_ratio(&pair, Proto::H2, per_core).next().is_none());
    }

    #[test]
    fn ratio_text_names_the_spread() {
        let s = spread([1.48, 1.52, 1.60]);
        assert_eq!(ratio_text(s), "1.52x (1.48-1.60, stable to ±5 %)");
        assert_eq!(ratio_text(None), "-");
    }
}
