//! Durations written as Go's `time.ParseDuration` reads them, the syntax
//! Istio users write everywhere (`1h30m`, `250ms`, `1.5s`, `0`): a
//! sequence of decimal numbers, each with an optional fraction and a unit
//! (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), optionally preceded by `+`.
//!
//! One grammar serves the daemons' flags and Istio's YAML; [`Syntax`] says
//! how a caller departs from it:
//!
//! - [`Syntax::GO`] is Go's grammar as it is (Istio's YAML fields);
//! - [`Syntax::FLAG`] also reads a plain number as seconds (`15`), which
//!   the daemons' flags and the agent's config file accepted before they
//!   took Go durations, and which Go rejects, so no input changes meaning.
//!
//! Values are [`std::time::Duration`]s: negative durations are refused,
//! and the range is `Duration`'s rather than Go's ±292 years (callers with
//! a tighter bound, such as a protobuf `Duration`, check it themselves).
//! [`format`] writes a duration back as Go's `Duration.String` does.
use std::time::Duration;

pub mod de;

/// How a parse departs from Go's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// A number without a unit is seconds (Go: only `0` may omit it).
    pub bare_seconds: bool,
}

impl Syntax {
    /// Go's `time.ParseDuration`, without negative values.
    pub const GO: Syntax = Syntax {
        bare_seconds: false,
    };
    /// Go's grammar, plus a plain number of seconds.
    pub const FLAG: Syntax = Syntax { bare_seconds: true };

    /// Parses `text` with this syntax.
    pub fn parse(self, text: &str) -> Result<Duration, DurationError> {
        if self.bare_seconds && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let secs = text.parse().map_err(|_| DurationError::TooLarge)?;
            return Ok(Duration::from_secs(secs));
        }
        parse_go(text)
    }
}

/// What is wrong with a duration's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty")]
    Empty,
    #[error("a duration cannot be negative")]
    Negative,
    #[error("expected a number followed by a unit: h, m, s, ms, us or ns")]
    MissingNumber,
    #[error("missing unit (h, m, s, ms, us or ns)")]
    MissingUnit,
    #[error("unknown unit {0:?} (h, m, s, ms, us or ns)")]
    UnknownUnit(String),
    #[error("too large")]
    TooLarge,
}

/// [`Syntax::GO`]: Go's `time.ParseDuration`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    Syntax::GO.parse(text)
}

/// [`Syntax::FLAG`], as a clap `value_parser`.
pub fn parse_flag(text: &str) -> Result<Duration, DurationError> {
    Syntax::FLAG.parse(text)
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

fn parse_go(text: &str) -> Result<Duration, DurationError> {
    let rest = match text.as_bytes().first() {
        None => return Err(DurationError::Empty),
        Some(b'-') => return Err(DurationError::Negative),
        Some(b'+') => &text[1..],
        Some(_) => text,
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::MissingNumber);
    }
    let mut rest = rest;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let (int, after) = split_digits(rest);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => split_digits(after),
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(DurationError::MissingNumber);
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = unit_nanos(unit)?;
        nanos = nanos
            .checked_add(number(int, frac, scale)?)
            .ok_or(DurationError::TooLarge)?;
        rest = after;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| DurationError::TooLarge)?;
    // The remainder is below 10^9, so it fits.
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// The leading ASCII digits of `text`, and the rest.
fn split_digits(text: &str) -> (&str, &str) {
    let len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(len)
}

fn unit_nanos(unit: &str) -> Result<u128, DurationError> {
    Ok(match unit {
        "ns" => 1,
        // Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "" => return Err(DurationError::MissingUnit),
        other => return Err(DurationError::UnknownUnit(other.to_string())),
    })
}

/// `int.frac` units of `scale` nanoseconds, in nanoseconds (fraction
/// digits beyond a nanosecond are dropped, as Go does).
fn number(int: &str, frac: &str, scale: u128) -> Result<u128, DurationError> {
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| DurationError::TooLarge)?
    };
    let mut total = whole.checked_mul(scale).ok_or(DurationError::TooLarge)?;
    if !frac.is_empty() {
        let digits = &frac[..frac.len().min(18)];
        let f: u128 = digits.parse().map_err(|_| DurationError::TooLarge)?;
        total += f * scale / 10u128.pow(digits.len() as u32);
    }
    Ok(total)
}

/// Go's `Duration.String`: `1h30m0s`, `1.5s`, `250ms`, `0s`; [`parse`]
/// reads it back to the same value.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    let nanos = duration.as_nanos();
    if nanos < NANOS_PER_SEC {
        let (unit, scale, width) = match nanos {
            0..=999 => ("ns", 1, 0),
            1_000..=999_999 => ("µs", 1_000, 3),
            _ => ("ms", 1_000_000, 6),
        };
        return format!("{}{unit}", decimal(nanos, scale, width));
    }
    let secs = duration.as_secs();
    let (hours, minutes) = (secs / 3600, secs / 60 % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let seconds = u128::from(secs % 60) * NANOS_PER_SEC + u128::from(duration.subsec_nanos());
    out.push_str(&decimal(seconds, NANOS_PER_SEC, 9));
    out.push('s');
    out
}

/// `value / scale` in decimal, without trailing zeros in the fraction.
fn decimal(value: u128, scale: u128, width: usize) -> String {
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
