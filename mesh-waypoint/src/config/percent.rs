//! Envoy's `FractionalPercent`: numerator over 100, 10 000 or 1 000 000.
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;

use super::ConfigError;

/// A probability as numerator / denominator (capped at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    pub const ALWAYS: Fraction = Fraction {
        numerator: 100,
        denominator: 100,
    };

    pub fn from_proto(p: &FractionalPercent, field: &str) -> Result<Self, ConfigError> {
        let denominator = match p.denominator {
            0 => 100,
            1 => 10_000,
            2 => 1_000_000,
            other => {
                return Err(ConfigError::new(
                    format!("{field}.denominator"),
                    format!("unknown denominator {other}"),
                ))
            }
        };
        Ok(Fraction {
            numerator: p.numerator.min(denominator),
            denominator,
        })
    }

    /// True when a uniform draw in `[0, denominator)` falls under the numerator.
    pub fn hit(&self, draw_below_denominator: u64) -> bool {
        draw_below_denominator < u64::from(self.numerator)
    }

    /// As a percentage, for dumps.
    pub fn percent(&self) -> f64 {
        f64::from(self.numerator) * 100.0 / f64::from(self.denominator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn million_denominator_and_cap() {
        let f = Fraction::from_proto(
            &FractionalPercent {
                numerator: 1000,
                denominator: 2,
            },
            "p",
        )
        .unwrap();
        assert_eq!(f.denominator, 1_000_000);
        assert!((f.percent() - 0.1).abs() < 1e-9);
        assert!(f.hit(999) && !f.hit(1000));
        let capped = Fraction::from_proto(
            &FractionalPercent {
                numerator: 500,
                denominator: 0,
            },
            "p",
        )
        .unwrap();
        assert_eq!(capped.numerator, 100);
        let err = Fraction::from_proto(
            &FractionalPercent {
                numerator: 1,
                denominator: 9,
            },
            "abort.percentage",
        )
        .unwrap_err();
        assert_eq!(err.field, "abort.percentage.denominator");
    }
}
