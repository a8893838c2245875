//! Per-token rate limits: a token bucket per token that has a limit, refilled continuously at
//! the token's `requests_per_second` and holding at most one second's worth, so a client
//! may burst that many requests and then goes at the rate. Past it: 429 with `Retry-After`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One token's bucket.
#[derive(Debug)]
pub(super) struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket for `per_second` requests a second.
    pub(super) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes one request's worth, or says how long until one is there.
    pub(super) fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *state;
        let refilled = now.saturating_duration_since(*last).as_secs_f64() * self.rate;
        *tokens = (*tokens + refilled).min(self.rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_bursts_its_rate_then_refills_at_it() {
        let bucket = Bucket::new(4);
        let start = Instant::now();
        for _ in 0..4 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(250),
            "{wait:?}"
        );
        assert!(bucket.take(start + Duration::from_millis(260)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(260)).is_err());
        // Never more than a second's worth, however long it was idle.
        let later = start + Duration::from_secs(60);
        for _ in 0..4 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }
}
