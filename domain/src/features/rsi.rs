//! Relative strength index (TA-Lib `RSI`: Wilder's smoothing, seeded with the simple average
//! of the first `period` gains and losses).

use serde::{Deserialize, Serialize};

/// The relative strength index of a series of closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rsi {
    period: usize,
    previous: Option<f64>,
    /// Changes seen while seeding.
    seen: usize,
    gain: f64,
    loss: f64,
}

impl Rsi {
    /// An index over `period` changes.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn new(period: usize) -> Self {
        assert!(period > 0, "an RSI needs a period");
        Self {
            period,
            previous: None,
            seen: 0,
            gain: 0.0,
            loss: 0.0,
        }
    }

    /// Takes the next close; the index once `period` changes were seen.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let previous = self.previous.replace(close)?;
        let change = close - previous;
        let (gain, loss) = (change.max(0.0), (-change).max(0.0));
        let period = self.period as f64;
        if self.seen < self.period {
            self.gain += gain;
            self.loss += loss;
            self.seen += 1;
            if self.seen < self.period {
                return None;
            }
            self.gain /= period;
            self.loss /= period;
        } else {
            self.gain = (self.gain * (period - 1.0) + gain) / period;
            self.loss = (self.loss * (period - 1.0) + loss) / period;
        }
        let total = self.gain + self.loss;
        Some(if total == 0.0 {
            0.0
        } else {
            100.0 * (self.gain / total)
        })
    }
}
