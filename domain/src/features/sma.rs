//! Simple moving average (TA-Lib `SMA`).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The mean of the last `period` values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sma {
    period: usize,
    window: VecDeque<f64>,
    sum: f64,
}

impl Sma {
    /// An average over `period` values.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn new(period: usize) -> Self {
        assert!(period > 0, "an average needs a period");
        Self {
            period,
            window: VecDeque::with_capacity(period + 1),
            sum: 0.0,
        }
    }

    /// Takes the next value; the average once `period` values were seen.
    pub fn update(&mut self, value: f64) -> Option<f64> {
        self.window.push_back(value);
        self.sum += value;
        if self.window.len() > self.period {
            self.sum -= self.window.pop_front().expect("the window is not empty");
        }
        (self.window.len() == self.period).then(|| self.sum / self.period as f64)
    }

    /// The values in the window, oldest first.
    pub(super) fn window(&self) -> &VecDeque<f64> {
        &self.window
    }
}
