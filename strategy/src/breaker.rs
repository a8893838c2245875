//! The circuit breaker in front of each predictor, counted in bars rather than wall time so
//! that a backtest (and a strategy replaying after a restart) trips it exactly as it did live.

use serde::{Deserialize, Serialize};

use crate::spec::BreakerSpec;

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are skipped until the bar `until` (exclusive).
    Open {
        /// The first bar that may try again.
        until: u64,
    },
    /// The next call is a trial: success closes, failure opens again.
    HalfOpen,
}

/// One predictor's breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    state: BreakerState,
    /// Failures in a row.
    failures: u32,
    /// Failures since the strategy started.
    pub failures_total: u64,
    /// Times it opened.
    pub opened_total: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            failures_total: 0,
            opened_total: 0,
        }
    }
}

impl Breaker {
    /// Where it stands.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go through at bar `bar` (an open breaker whose time is up turns
    /// half-open).
    pub fn allows(&mut self, bar: u64) -> bool {
        match self.state {
            BreakerState::Closed | BreakerState::HalfOpen => true,
            BreakerState::Open { until } if bar >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } => false,
        }
    }

    /// The call succeeded.
    pub fn success(&mut self) {
        self.state = BreakerState::Closed;
        self.failures = 0;
    }

    /// The call at bar `bar` failed: opens after `failures_max` in a row, or at once when
    /// half-open.
    pub fn failure(&mut self, bar: u64, spec: &BreakerSpec) {
        self.failures = self.failures.saturating_add(1);
        self.failures_total += 1;
        if self.state == BreakerState::HalfOpen || self.failures >= spec.failures_max {
            self.state = BreakerState::Open {
                until: bar + u64::from(spec.open_bars).max(1),
            };
            self.opened_total += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_tries_again_after_its_bars() {
        let spec = BreakerSpec {
            failures_max: 2,
            open_bars: 3,
        };
        let mut breaker = Breaker::default();
        breaker.failure(1, &spec);
        breaker.success();
        breaker.failure(2, &spec);
        assert_eq!(breaker.state(), BreakerState::Closed, "not two in a row");
        breaker.failure(3, &spec);
        assert_eq!(breaker.state(), BreakerState::Open { until: 6 });
        assert!(!breaker.allows(5));
        assert!(breaker.allows(6));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.failure(6, &spec);
        assert_eq!(
            breaker.state(),
            BreakerState::Open { until: 9 },
            "a failed trial"
        );
        assert!(breaker.allows(9));
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!((breaker.failures_total, breaker.opened_total), (4, 2));
    }
}
