//! The randomness behind percentages, weighted picks and retry jitter,
//! injectable so tests can seed it and check distributions exactly.
use std::sync::Mutex;

use rand::{rngs::StdRng, Rng, SeedableRng};

/// A shared random source.
#[derive(Debug)]
pub struct Dice(Mutex<StdRng>);

impl Dice {
    pub fn from_entropy() -> Self {
        Dice(Mutex::new(StdRng::from_entropy()))
    }

    /// Deterministic, for tests.
    pub fn seeded(seed: u64) -> Self {
        Dice(Mutex::new(StdRng::seed_from_u64(seed)))
    }

    /// Uniform in `[0, n)`; 0 when `n == 0`.
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen_range(0..n)
    }

    /// True with probability `fraction`.
    pub fn chance(&self, f: crate::config::percent::Fraction) -> bool {
        f.numerator > 0 && f.hit(self.below(u64::from(f.denominator)))
    }
}
