//! The grammar of Go's `time.ParseDuration`, the flag extension and
//! `Duration.String`.
use std::time::Duration;

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn reads_what_go_reads() {
    for (text, want) in [
        ("0", Duration::ZERO),
        ("+0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("3s", MS(3_000)),
        ("+3s", MS(3_000)),
        ("1.5s", MS(1_500)),
        ("0.5s", MS(500)),
        (".25s", MS(250)),
        ("1.s", MS(1_000)),
        ("250ms", MS(250)),
        ("1m", MS(60_000)),
        ("1h", MS(3_600_000)),
        ("1h30m", MS(5_400_000)),
        ("1.5h", MS(5_400_000)),
        ("2h45m30.5s", MS(9_930_500)),
        ("1m1m", MS(120_000)),
        ("100ns", Duration::from_nanos(100)),
        ("7us", Duration::from_micros(7)),
        ("7µs", Duration::from_micros(7)),
        ("7μs", Duration::from_micros(7)),
        ("1.000000001s", Duration::new(1, 1)),
        // Beyond a nanosecond, digits are dropped.
        ("1.0000000019s", Duration::new(1, 1)),
        ("87600h", Duration::from_secs(87_600 * 3_600)),
    ] {
        assert_eq!(parse(text), Ok(want), "{text}");
    }
}

#[test]
fn refuses_what_go_refuses_and_says_why() {
    for (text, why) in [
        ("", DurationError::Empty),
        ("+", DurationError::MissingNumber),
        ("s", DurationError::MissingNumber),
        (".s", DurationError::MissingNumber),
        ("1h.", DurationError::MissingNumber),
        ("3", DurationError::MissingUnit),
        ("1.5", DurationError::MissingUnit),
        ("1s2", DurationError::MissingUnit),
        ("1.s2", DurationError::MissingUnit),
        ("3d", DurationError::UnknownUnit("d".into())),
        ("3 s", DurationError::UnknownUnit(" s".into())),
        ("1h 30m", DurationError::UnknownUnit("h ".into())),
        ("soon", DurationError::MissingNumber),
        ("-1s", DurationError::Negative),
        ("-0", DurationError::Negative),
        (
            "99999999999999999999999999999999999999999h",
            DurationError::TooLarge,
        ),
    ] {
        assert_eq!(parse(text), Err(why), "{text}");
    }
}

#[test]
fn errors_read_as_sentences() {
    assert_eq!(
        parse("3 seconds").unwrap_err().to_string(),
        "unknown unit \" seconds\" (h, m, s, ms, us or ns)"
    );
    assert_eq!(
        parse("15").unwrap_err().to_string(),
        "missing unit (h, m, s, ms, us or ns)"
    );
}

#[test]
fn beyond_go_s_range_within_duration_s() {
    // Go stops at 2^63 ns (about 292 years); callers bound it themselves.
    assert_eq!(
        parse("99999999999999h"),
        Ok(Duration::from_secs(99_999_999_999_999 * 3_600))
    );
    assert_eq!(
        parse(&format!("{}s", u64::MAX)),
        Ok(Duration::from_secs(u64::MAX))
    );
    assert_eq!(
        parse(&format!("{}0s", u64::MAX)),
        Err(DurationError::TooLarge)
    );
}

#[test]
fn flags_also_read_plain_seconds() {
    assert_eq!(parse_flag("15"), Ok(Duration::from_secs(15)));
    assert_eq!(parse_flag("0"), Ok(Duration::ZERO));
    assert_eq!(parse_flag("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_flag("1h30m"), Ok(Duration::from_secs(5_400)));
    // Only a whole plain number: anything else is Go's grammar.
    assert_eq!(parse_flag("1.5"), Err(DurationError::MissingUnit));
    assert_eq!(parse_flag("+15"), Err(DurationError::MissingUnit));
    assert_eq!(
        parse_flag("1d"),
        Err(DurationError::UnknownUnit("d".into()))
    );
    assert_eq!(parse_flag(""), Err(DurationError::Empty));
}

#[test]
fn formats_as_go_does() {
    for (d, want) in [
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::from_nanos(1_500), "1.5µs"),
        (MS(250), "250ms"),
        (Duration::from_micros(1_250), "1.25ms"),
        (MS(1_500), "1.5s"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(3_600), "1h0m0s"),
        (Duration::from_secs(5_400), "1h30m0s"),
        (Duration::new(3_661, 1), "1h1m1.000000001s"),
    ] {
        assert_eq!(format(d), want, "{d:?}");
        assert_eq!(parse(want), Ok(d), "{want}");
    }
}

#[test]
fn config_files_take_strings_or_seconds() {
    #[derive(::serde::Deserialize)]
    struct File {
        #[serde(default, deserialize_with = "de::option")]
        ttl: Option<Duration>,
    }
    let read = |text: &str| serde_json::from_str::<File>(text).map(|f| f.ttl);
    assert_eq!(read(r#"{"ttl": "1h30m"}"#).unwrap(), Some(MS(5_400_000)));
    assert_eq!(read(r#"{"ttl": "15"}"#).unwrap(), Some(MS(15_000)));
    assert_eq!(read(r#"{"ttl": 15}"#).unwrap(), Some(MS(15_000)));
    assert_eq!(read("{}").unwrap(), None);
    let err = read(r#"{"ttl": "1d"}"#).unwrap_err().to_string();
    assert!(
        err.contains("\"1d\" is not a duration: unknown unit"),
        "{err}"
    );
    assert!(read(r#"{"ttl": -1}"#).is_err());
}
