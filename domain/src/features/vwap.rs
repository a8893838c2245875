//! Volume-weighted average price: the typical price `(high + low + close) / 3` of each bar,
//! weighted by its volume, summed since the start of the bar's UTC day.

use super::Bar;
use serde::{Deserialize, Serialize};

const DAY_MICROS: i64 = 86_400_000_000;

/// A VWAP anchored at each UTC midnight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vwap {
    day: Option<i64>,
    weighted: f64,
    volume: f64,
}

impl Vwap {
    /// A VWAP that starts again each UTC day.
    pub fn daily() -> Self {
        Self::default()
    }

    /// Takes the next bar; the day's VWAP so far (`None` while the day has no volume).
    pub fn update(&mut self, bar: &Bar) -> Option<f64> {
        let day = bar.start.div_euclid(DAY_MICROS);
        if self.day != Some(day) {
            *self = Self {
                day: Some(day),
                ..Self::default()
            };
        }
        self.weighted += (bar.high + bar.low + bar.close) / 3.0 * bar.volume;
        self.volume += bar.volume;
        (self.volume > 0.0).then(|| self.weighted / self.volume)
    }
}
