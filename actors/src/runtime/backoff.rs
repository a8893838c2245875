//! Exponential backoff with jitter, and the small deterministic random source behind the jitter.
//!
//! A restarted child that fails again at once would otherwise spin: each restart waits twice as
//! long as the one before, up to a cap. Jitter spreads restarts of many children that failed
//! together (a shared dependency went away) so they do not all come back in the same instant.
//! The jitter source is a seeded xorshift, not `rand`: restarts need spread, not unpredictability,
//! and a seed from configuration makes every test run (and every incident replay) repeat exactly.

use std::time::Duration;

/// The seed used when a seed of zero is given: xorshift never leaves the all-zero state.
const SEED_FOR_ZERO: u64 = 0x9E37_79B9_7F4A_7C15;

/// Largest doubling applied to the minimum delay; beyond it the cap always wins anyway, and a
/// bounded shift keeps the multiplication from overflowing.
const DOUBLINGS_MAX: u32 = 31;

/// A deterministic source of uniform numbers in `[0, 1)` (xorshift64*), seeded from configuration.
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A source seeded with `seed`; the same seed always yields the same sequence.
    pub fn new(seed: u64) -> Self {
        let state = if seed == 0 { SEED_FOR_ZERO } else { seed };
        Self { state }
    }

    /// The next number, uniform in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let scrambled = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // The top 53 bits fill an f64 mantissa exactly, so the result is strictly below 1.
        (scrambled >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exponential backoff: attempt `n` (1 = the first retry) waits `min * 2^(n-1)`, capped at
/// `max`, then shortened by up to `jitter` of itself (so the cap is never exceeded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub min: Duration,
    /// The longest delay, whatever the attempt.
    pub max: Duration,
    /// The largest fraction, in `[0, 1)`, taken off a delay at random.
    pub jitter: f64,
}

impl Backoff {
    /// The delay before attempt `attempt` without jitter: `min * 2^(attempt-1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(DOUBLINGS_MAX);
        self.min
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// The delay before attempt `attempt`: the [ceiling](Self::ceiling) times a factor drawn
    /// uniformly from `(1 - jitter, 1]`.
    pub fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        assert!((0.0..1.0).contains(&self.jitter), "jitter out of [0, 1)");
        let ceiling = self.ceiling(attempt);
        if self.jitter == 0.0 {
            return ceiling;
        }
        ceiling.mul_f64(1.0 - self.jitter * jitter.next_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: f64) -> Backoff {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter,
        }
    }

    #[test]
    fn delays_double_then_stop_at_the_cap() {
        let backoff = backoff(0.0);
        let delays: Vec<u128> = (1..=7).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        // Attempt zero means "no failure yet"; treat it like the first.
        assert_eq!(backoff.ceiling(0), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_shortens_by_at_most_its_fraction_and_repeats_for_a_seed() {
        let backoff = backoff(0.5);
        let mut first = Jitter::new(7);
        let mut second = Jitter::new(7);
        for attempt in 1..50 {
            let delay = backoff.delay(attempt, &mut first);
            let ceiling = backoff.ceiling(attempt);
            assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
            assert!(delay > ceiling / 2, "{delay:?} below half of {ceiling:?}");
            assert_eq!(delay, backoff.delay(attempt, &mut second));
        }
    }

    #[test]
    fn jitter_source_is_uniform_enough_and_survives_a_zero_seed() {
        let mut jitter = Jitter::new(0);
        let samples: Vec<f64> = (0..10_000).map(|_| jitter.next_unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let low = samples.iter().filter(|x| **x < 0.1).count();
        assert!((800..1200).contains(&low), "{low} samples below 0.1");
    }
}
