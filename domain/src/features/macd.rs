//! Moving average convergence/divergence (TA-Lib `MACD`). As TA-Lib does, both averages start
//! on the slow one's first bar: the slow average is seeded with the simple average of the first
//! `slow` closes, the fast one with that of the last `fast` of them; the signal is the
//! exponential average of the line, and values come once the signal has its first.

use serde::{Deserialize, Serialize};

use super::{Ema, Sma};

/// MACD's three values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MacdValue {
    /// Fast average minus slow average.
    pub macd: f64,
    /// The line's exponential average.
    pub signal: f64,
    /// Line minus signal.
    pub histogram: f64,
}

/// MACD of a series of closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Macd {
    fast_period: usize,
    /// The slow average's seed, whose window also seeds the fast one.
    slow_seed: Sma,
    averages: Option<(Ema, Ema)>,
    slow_period: usize,
    signal: Ema,
}

impl Macd {
    /// MACD with these periods (TA-Lib's defaults are 12, 26, 9).
    ///
    /// # Panics
    ///
    /// If a period is zero or `fast` is not below `slow`.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        assert!(0 < fast && fast < slow, "MACD needs 0 < fast < slow");
        Self {
            fast_period: fast,
            slow_seed: Sma::new(slow),
            averages: None,
            slow_period: slow,
            signal: Ema::new(signal),
        }
    }

    /// Takes the next close; the values once the signal has its first.
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        let (fast, slow) = match &mut self.averages {
            Some((fast, slow)) => (
                fast.update(close).expect("seeded"),
                slow.update(close).expect("seeded"),
            ),
            None => {
                let slow = self.slow_seed.update(close)?;
                let window = self.slow_seed.window();
                let recent = window.iter().skip(window.len() - self.fast_period);
                let fast = recent.sum::<f64>() / self.fast_period as f64;
                self.averages = Some((
                    Ema::seeded(self.fast_period, fast),
                    Ema::seeded(self.slow_period, slow),
                ));
                (fast, slow)
            }
        };
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }
}
