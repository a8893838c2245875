//! The ensemble: predictors' scores weighed into one signal with a confidence.

use serde::{Deserialize, Serialize};

/// Which way a signal points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Hold the most the risk allows.
    Buy,
    /// Hold nothing.
    Sell,
    /// Change nothing.
    Flat,
}

/// The ensemble's view after one bar.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The weighted mean of the scores, −1 to +1.
    pub score: f64,
    /// How sure: the score's magnitude, 0 to 1.
    pub confidence: f64,
    /// What it says.
    pub direction: Direction,
    /// Whether a cached prediction stood in for a failing predictor.
    pub fallback: bool,
}

/// Weighs `(score, weight)` pairs into a signal: buy at or above `threshold`, sell at or
/// below its negative, flat between (and flat with no scores at all).
pub fn combine(scores: &[(f64, f64)], threshold: f64, fallback: bool) -> Signal {
    let total: f64 = scores.iter().map(|(_, weight)| weight).sum();
    let score = if total > 0.0 {
        scores
            .iter()
            .map(|(score, weight)| score * weight)
            .sum::<f64>()
            / total
    } else {
        0.0
    };
    let direction = if total > 0.0 && score >= threshold {
        Direction::Buy
    } else if total > 0.0 && score <= -threshold {
        Direction::Sell
    } else {
        Direction::Flat
    };
    Signal {
        score,
        confidence: score.abs(),
        direction,
        fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighs_the_scores_against_the_threshold() {
        let signal = combine(&[(1.0, 1.0), (-0.5, 2.0)], 0.2, false);
        assert_eq!((signal.score, signal.direction), (0.0, Direction::Flat));
        let signal = combine(&[(0.9, 3.0), (-0.3, 1.0)], 0.2, true);
        assert!((signal.score - 0.6).abs() < 1e-12);
        assert_eq!(signal.direction, Direction::Buy);
        assert!(signal.fallback);
        assert_eq!(
            combine(&[(-0.2, 1.0)], 0.2, false).direction,
            Direction::Sell
        );
        assert_eq!(combine(&[], 0.2, false).direction, Direction::Flat);
    }
}
