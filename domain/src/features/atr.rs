//! Average true range (TA-Lib `ATR`: the true range from the second bar on, its simple
//! average over the first `period` of them, then Wilder's smoothing).

use super::Bar;
use serde::{Deserialize, Serialize};

/// The average true range of a series of bars.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    previous_close: Option<f64>,
    /// True ranges seen while seeding.
    seen: usize,
    value: f64,
}

impl Atr {
    /// An average over `period` true ranges.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn new(period: usize) -> Self {
        assert!(period > 0, "an ATR needs a period");
        Self {
            period,
            previous_close: None,
            seen: 0,
            value: 0.0,
        }
    }

    /// Takes the next bar; the average once `period` true ranges were seen.
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        let previous = self.previous_close.replace(bar.close)?;
        let range = (bar.high - bar.low)
            .max((bar.high - previous).abs())
            .max((bar.low - previous).abs());
        let period = self.period as f64;
        if self.seen < self.period {
            self.value += range;
            self.seen += 1;
            if self.seen < self.period {
                return None;
            }
            self.value /= period;
        } else {
            self.value = (self.value * (period - 1.0) + range) / period;
        }
        Some(self.value)
    }
}
