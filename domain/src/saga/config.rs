//! How long the saga waits for an answer before it retries, and how often it retries.

use serde::{Deserialize, Serialize};

/// Default wait for the first answer to a step's commands: 2 seconds.
pub const STEP_TIMEOUT_MICROS_DEFAULT: u64 = 2_000_000;
/// Default cap of the exponential backoff: 60 seconds.
pub const STEP_TIMEOUT_MAX_MICROS_DEFAULT: u64 = 60_000_000;
/// Default number of sends of a step's commands (the first one included) before the step
/// times out.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 6;
/// The largest `attempts_max` a configuration may ask for: keeps every saga's retries bounded
/// even when misconfigured.
pub const ATTEMPTS_LIMIT: u32 = 32;

const _: () = assert!(STEP_TIMEOUT_MICROS_DEFAULT > 0);
const _: () = assert!(STEP_TIMEOUT_MICROS_DEFAULT <= STEP_TIMEOUT_MAX_MICROS_DEFAULT);
const _: () = assert!(ATTEMPTS_MAX_DEFAULT >= 1);
const _: () = assert!(ATTEMPTS_MAX_DEFAULT <= ATTEMPTS_LIMIT);

/// Timeouts and retry limits of one saga. Persisted in its `Started` event, so a replay
/// computes the same deadlines whatever the host's configuration is today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaConfig {
    /// How long the first attempt of a step waits for an answer, in microseconds.
    pub step_timeout_micros: u64,
    /// The cap of the backoff: no attempt waits longer than this, in microseconds.
    pub step_timeout_max_micros: u64,
    /// How many times a step's commands are sent (the first send included) before the step
    /// times out (hold, submit) or the saga stalls (cancel, settlement, release).
    pub attempts_max: u32,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            step_timeout_micros: STEP_TIMEOUT_MICROS_DEFAULT,
            step_timeout_max_micros: STEP_TIMEOUT_MAX_MICROS_DEFAULT,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
        }
    }
}

impl SagaConfig {
    /// Whether the configuration is usable: positive timeouts, a cap no smaller than the
    /// first timeout, and `1 ..= ATTEMPTS_LIMIT` attempts.
    pub fn is_valid(&self) -> bool {
        self.step_timeout_micros > 0
            && self.step_timeout_micros <= self.step_timeout_max_micros
            && self.step_timeout_max_micros <= i64::MAX as u64
            && (1..=ATTEMPTS_LIMIT).contains(&self.attempts_max)
    }

    /// How long attempt number `attempt` (0 for the first send) waits: the step timeout
    /// doubled per attempt, capped.
    pub fn timeout_micros(&self, attempt: u32) -> u64 {
        let backoff = 1u64
            .checked_shl(attempt)
            .and_then(|factor| self.step_timeout_micros.checked_mul(factor));
        backoff.map_or(self.step_timeout_max_micros, |micros| {
            micros.min(self.step_timeout_max_micros)
        })
    }
}
