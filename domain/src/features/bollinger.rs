//! Bollinger bands (TA-Lib `BBANDS` with a simple average): the average of the last `period`
//! closes, plus and minus `width` population standard deviations of them.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The three bands.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    /// Middle plus `width` deviations.
    pub upper: f64,
    /// The simple average.
    pub middle: f64,
    /// Middle minus `width` deviations.
    pub lower: f64,
}

/// Bollinger bands of a series of closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bollinger {
    period: usize,
    width: f64,
    window: VecDeque<f64>,
    sum: f64,
    sum_of_squares: f64,
}

impl Bollinger {
    /// Bands over `period` closes, `width` deviations wide.
    ///
    /// # Panics
    ///
    /// If `period` is zero.
    pub fn new(period: usize, width: f64) -> Self {
        assert!(period > 0, "bands need a period");
        Self {
            period,
            width,
            window: VecDeque::with_capacity(period + 1),
            sum: 0.0,
            sum_of_squares: 0.0,
        }
    }

    /// Takes the next close; the bands once `period` closes were seen.
    pub fn update(&mut self, close: f64) -> Option<Bands> {
        self.window.push_back(close);
        self.sum += close;
        self.sum_of_squares += close * close;
        if self.window.len() > self.period {
            let old = self.window.pop_front().expect("the window is not empty");
            self.sum -= old;
            self.sum_of_squares -= old * old;
        }
        if self.window.len() < self.period {
            return None;
        }
        let period = self.period as f64;
        let middle = self.sum / period;
        let variance = self.sum_of_squares / period - middle * middle;
        let deviation = if variance > 0.0 { variance.sqrt() } else { 0.0 };
        Some(Bands {
            upper: middle + self.width * deviation,
            middle,
            lower: middle - self.width * deviation,
        })
    }
}
