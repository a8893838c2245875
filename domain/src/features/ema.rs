//! Exponential moving average (TA-Lib `EMA`: seeded with the simple average of its first
//! `period` values, then `k = 2 / (period + 1)`).

use super::Sma;
use serde::{Deserialize, Serialize};

/// An exponential moving average.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    k: f64,
    seed: Sma,
    value: Option<f64>,
}

impl Ema {
    /// An average over `period` values.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn new(period: usize) -> Self {
        Self {
            k: 2.0 / (period as f64 + 1.0),
            seed: Sma::new(period),
            value: None,
        }
    }

    /// An average whose first value is `seed` (what TA-Lib's MACD does to its fast average).
    pub(super) fn seeded(period: usize, seed: f64) -> Self {
        let mut ema = Self::new(period);
        ema.value = Some(seed);
        ema
    }

    /// Takes the next value; the average once `period` values were seen.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        self.value = match self.value {
            Some(previous) => Some((value - previous) * self.k + previous),
            None => self.seed.update(value),
        };
        self.value
    }
}
