//! The account's order rate, for the `max_orders_per_second` limit: a token bucket in its
//! arithmetic form (GCRA, as rate limiters in exchanges and network gear keep it), one
//! timestamp per account rather than a timestamp per order.
//!
//! A bucket of `rate` tokens refills at `rate` per second; each hold placed takes one. So an
//! account may place `rate` orders at once, then `rate` a second. The state follows from the
//! holds' own timestamps, so a replay gives the same state and the same refusals.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::units::Timestamp;

/// When the bucket is full again (µs since the epoch; the time the next order would be due if
/// every order so far had come exactly at the rate). Zero before any order was counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderRate {
    full_at: i64,
}

impl OrderRate {
    /// Refuses a hold at `at` if the bucket is empty: `rate` holds were placed within the
    /// time it refills them.
    pub(crate) fn check(&self, rate: Option<u32>, at: Timestamp) -> Result<(), Error> {
        let Some(rate) = rate else { return Ok(()) };
        let interval = interval(rate);
        let after = self.full_at.max(at.0).saturating_add(interval);
        let window = interval.saturating_mul(i64::from(rate));
        if after.saturating_sub(at.0) > window {
            // Tokens the bucket owes, this order's included: the orders "of the last second".
            let owed = (self.full_at - at.0 + interval - 1) / interval + 1;
            return Err(Error::RiskLimit {
                limit: "max_orders_per_second".to_owned(),
                requested: u64::try_from(owed).unwrap_or(u64::MAX),
                maximum: u64::from(rate),
            });
        }
        Ok(())
    }

    /// Takes a token for a hold placed at `at` (nothing is counted without a limit).
    pub(crate) fn count(&mut self, rate: Option<u32>, at: Timestamp) {
        if let Some(rate) = rate {
            self.full_at = self.full_at.max(at.0).saturating_add(interval(rate));
        }
    }
}

/// Microseconds one token takes to refill (at least one).
fn interval(rate: u32) -> i64 {
    (Timestamp::MICROS_PER_SECOND / i64::from(rate.max(1))).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = Timestamp::MICROS_PER_SECOND;

    /// Places holds at `times` (µs), counting those let through: how many passed.
    fn passed(rate: u32, times: impl IntoIterator<Item = i64>) -> usize {
        let mut bucket = OrderRate::default();
        let mut passed = 0;
        for at in times {
            if bucket.check(Some(rate), Timestamp(at)).is_ok() {
                bucket.count(Some(rate), Timestamp(at));
                passed += 1;
            }
        }
        passed
    }

    #[test]
    fn a_burst_takes_the_whole_bucket_and_no_more() {
        let start = 1_000 * SECOND;
        assert_eq!(passed(5, (0..20).map(|_| start)), 5);
        assert_eq!(passed(1, (0..3).map(|_| start)), 1);
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let start = 1_000 * SECOND;
        // 10 a second for 10 seconds, asked 100 a second: 10 at once, then 10 a second.
        let asked = (0..1_000).map(|index| start + index * SECOND / 100);
        let passed = passed(10, asked);
        assert!((100..=110).contains(&passed), "{passed}");
    }

    #[test]
    fn orders_at_the_rate_all_pass() {
        let start = 1_000 * SECOND;
        assert_eq!(
            passed(4, (0..40).map(|index| start + index * SECOND / 4)),
            40
        );
    }

    #[test]
    fn a_refusal_names_the_limit_and_the_orders_owed() {
        let at = Timestamp(1_000 * SECOND);
        let mut bucket = OrderRate::default();
        for _ in 0..3 {
            bucket.check(Some(3), at).unwrap();
            bucket.count(Some(3), at);
        }
        match bucket.check(Some(3), at) {
            Err(Error::RiskLimit {
                limit,
                requested,
                maximum,
            }) => {
                assert_eq!(limit, "max_orders_per_second");
                assert_eq!((requested, maximum), (4, 3));
            }
            other => panic!("{other:?}"),
        }
        assert!(bucket.check(None, at).is_ok(), "no limit, no refusal");
    }
}
