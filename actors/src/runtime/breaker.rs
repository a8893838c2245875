//! A circuit breaker for journal writes and calls to other nodes.
//!
//! When a dependency is down, waiting for each call to time out ties up every caller and
//! keeps hammering the dependency. The breaker counts consecutive failures; at
//! [`BreakerConfig::failure_threshold`] it **opens** and fails calls at once with
//! [`Error::BreakerOpen`] (HTTP 503 with Retry-After). After the reset timeout it lets
//! exactly **one probe** call through (**half-open**): success closes it, failure opens it
//! again with the reset timeout doubled, up to [`BreakerConfig::reset_timeout_max`]. A success
//! brings the reset timeout back to [`BreakerConfig::reset_timeout`].
//!
//! Only infrastructure failures should trip it: [`CircuitBreaker::call_with`] takes a
//! classifier so that a business rejection or an optimistic-concurrency conflict, which prove
//! the dependency is working, count as successes.
//!
//! The clock is tokio's, so tests drive it with a paused runtime.
//!
//! ```
//! use std::time::Duration;
//! use tradefloor_actors::{BreakerConfig, BreakerState, CircuitBreaker, Error};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let config = BreakerConfig { failure_threshold: 1, ..BreakerConfig::default() };
//! let breaker = CircuitBreaker::new("journal", config);
//! let failed = breaker.call(async { Err::<u64, &str>("connection refused") }).await;
//! assert_eq!(failed, Ok(Err("connection refused")));
//! assert_eq!(breaker.state().state, BreakerState::Open);
//! let refused = breaker.call(async { Ok::<u64, &str>(1) }).await;
//! assert!(matches!(refused, Err(Error::BreakerOpen { .. })));
//! # });
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::Error;

/// Default number of consecutive failures that opens a breaker.
pub const BREAKER_FAILURE_THRESHOLD_DEFAULT: u32 = 5;
/// Default deadline of one call through a breaker.
pub const BREAKER_CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Default time a breaker stays open before its first probe.
pub const BREAKER_RESET_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Default cap of the reset timeout's exponential backoff.
pub const BREAKER_RESET_TIMEOUT_MAX_DEFAULT: Duration = Duration::from_secs(60);

const _: () = assert!(BREAKER_FAILURE_THRESHOLD_DEFAULT >= 1);
const _: () = assert!(
    BREAKER_RESET_TIMEOUT_DEFAULT.as_nanos() <= BREAKER_RESET_TIMEOUT_MAX_DEFAULT.as_nanos()
);

/// How a breaker trips and recovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive failures (errors classified as failures, or timeouts) that open the breaker.
    pub failure_threshold: u32,
    /// A call still running after this long is abandoned and counts as a failure.
    pub call_timeout: Duration,
    /// How long the breaker stays open the first time, and again after any success.
    pub reset_timeout: Duration,
    /// Cap of the reset timeout, which doubles each time a half-open probe fails.
    pub reset_timeout_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: BREAKER_FAILURE_THRESHOLD_DEFAULT,
            call_timeout: BREAKER_CALL_TIMEOUT_DEFAULT,
            reset_timeout: BREAKER_RESET_TIMEOUT_DEFAULT,
            reset_timeout_max: BREAKER_RESET_TIMEOUT_MAX_DEFAULT,
        }
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast until the reset timeout passes.
    Open,
    /// The reset timeout has passed: the next call is the one probe, or the probe is running
    /// and other calls fail fast.
    HalfOpen,
}

/// A point-in-time view of a breaker, for the actor tree and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: String,
    /// Where it stands now.
    pub state: BreakerState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// How many times it has opened (from closed or from a failed probe).
    pub opened_count: u64,
    /// Calls failed fast because it was open or a probe was running.
    pub rejected_count: u64,
    /// When a call would be let through again, in milliseconds; absent when one would be now.
    pub retry_after_ms: Option<u64>,
    /// The reset timeout the next opening will use, in milliseconds (shows the backoff).
    pub reset_timeout_ms: u64,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    /// Open until `until`; once it has passed, the next call becomes the probe.
    Open {
        until: Instant,
    },
    /// A probe is running and must finish (or time out) by `probe_deadline`.
    HalfOpen {
        probe_deadline: Instant,
    },
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open { .. } => "open",
            Phase::HalfOpen { .. } => "half_open",
        }
    }
}

#[derive(Debug)]
struct Machine {
    phase: Phase,
    /// Bumped on every transition. A call's outcome counts only if the epoch has not changed
    /// since it was admitted, so a slow call admitted while closed cannot close a breaker
    /// that opened meanwhile, nor count twice towards an opening that already happened.
    epoch: u64,
    consecutive_failures: u32,
    reset_timeout_current: Duration,
    opened_count: u64,
    rejected_count: u64,
}

#[derive(Debug)]
struct Inner {
    name: String,
    config: BreakerConfig,
    machine: Mutex<Machine>,
}

/// A circuit breaker; clones share one state.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (shown in errors, logs and the actor tree).
    ///
    /// # Panics
    ///
    /// If the threshold is zero, a timeout is zero, or `reset_timeout > reset_timeout_max`:
    /// configuration errors, caught at construction.
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        assert!(
            config.failure_threshold >= 1,
            "failure threshold must be at least 1"
        );
        assert!(
            !config.call_timeout.is_zero(),
            "call timeout must not be zero"
        );
        assert!(
            !config.reset_timeout.is_zero(),
            "reset timeout must not be zero"
        );
        assert!(
            config.reset_timeout <= config.reset_timeout_max,
            "reset timeout must not exceed its maximum"
        );
        let machine = Machine {
            phase: Phase::Closed,
            epoch: 0,
            consecutive_failures: 0,
            reset_timeout_current: config.reset_timeout,
            opened_count: 0,
            rejected_count: 0,
        };
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                config,
                machine: Mutex::new(machine),
            }),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The breaker's configuration.
    pub fn config(&self) -> BreakerConfig {
        self.inner.config
    }

    /// Runs `call` through the breaker; every `Err` of the call counts as a failure.
    ///
    /// See [`call_with`](Self::call_with) for the result's shape.
    pub async fn call<T, E, F>(&self, call: F) -> Result<Result<T, E>, Error>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_with(call, |_| true).await
    }

    /// Runs `call` through the breaker; an `Err` counts as a failure only if `is_failure`
    /// says so, otherwise (like `Ok`) as a success, because it proves the dependency answered.
    ///
    /// The result is nested rather than merged into one error type so the crate keeps its
    /// single [`Error`] and the callee's own error reaches the caller untouched: the outer
    /// `Err` is the breaker's answer, the inner `Result` is the call's.
    ///
    /// - `Err(Error::BreakerOpen)`: open (or a probe is running); `call` was not polled.
    /// - `Err(Error::Timeout)`: `call` ran past [`BreakerConfig::call_timeout`] and was
    ///   dropped; counted as a failure.
    /// - `Ok(result)`: `call` finished with `result`.
    pub async fn call_with<T, E, F, C>(&self, call: F, is_failure: C) -> Result<Result<T, E>, Error>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&E) -> bool,
    {
        let admission = self.admit()?;
        let call_timeout = self.inner.config.call_timeout;
        match tokio::time::timeout(call_timeout, call).await {
            Err(_elapsed) => {
                admission.finish(Outcome::Failure);
                Err(Error::Timeout {
                    actor: self.inner.name.clone(),
                    after: call_timeout,
                })
            }
            Ok(result) => {
                let failed = matches!(&result, Err(error) if is_failure(error));
                admission.finish(if failed {
                    Outcome::Failure
                } else {
                    Outcome::Success
                });
                Ok(result)
            }
        }
    }

    /// A point-in-time view of the breaker.
    pub fn state(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let machine = self.lock();
        let (state, retry_after) = match machine.phase {
            Phase::Closed => (BreakerState::Closed, None),
            Phase::Open { until } if until > now => (BreakerState::Open, Some(until - now)),
            Phase::Open { .. } => (BreakerState::HalfOpen, None),
            Phase::HalfOpen { probe_deadline } => (
                BreakerState::HalfOpen,
                Some(probe_deadline.saturating_duration_since(now)),
            ),
        };
        BreakerSnapshot {
            name: self.inner.name.clone(),
            state,
            consecutive_failures: machine.consecutive_failures,
            opened_count: machine.opened_count,
            rejected_count: machine.rejected_count,
            retry_after_ms: retry_after.map(duration_ms),
            reset_timeout_ms: duration_ms(machine.reset_timeout_current),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // No code panics while holding this lock and each section leaves the machine in a
        // valid state, so a poisoned lock still guards valid data.
        self.inner
            .machine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or fails fast. Turns an expired open phase into half-open with
    /// this call as its probe.
    fn admit(&self) -> Result<Admission<'_>, Error> {
        let now = Instant::now();
        let mut machine = self.lock();
        let retry_after = match machine.phase {
            Phase::Closed => {
                return Ok(Admission::new(self, machine.epoch, false));
            }
            Phase::Open { until } if until <= now => {
                let probe_deadline = now + self.inner.config.call_timeout;
                self.transition(&mut machine, Phase::HalfOpen { probe_deadline });
                return Ok(Admission::new(self, machine.epoch, true));
            }
            Phase::Open { until } => until - now,
            Phase::HalfOpen { probe_deadline } => probe_deadline.saturating_duration_since(now),
        };
        machine.rejected_count += 1;
        Err(Error::BreakerOpen {
            breaker: self.inner.name.clone(),
            retry_after,
        })
    }

    fn record(&self, epoch: u64, outcome: Outcome) {
        let mut machine = self.lock();
        if machine.epoch != epoch {
            return;
        }
        match (machine.phase, outcome) {
            (Phase::Closed, Outcome::Success) => machine.consecutive_failures = 0,
            (Phase::Closed, Outcome::Failure) => {
                machine.consecutive_failures += 1;
                if machine.consecutive_failures >= self.inner.config.failure_threshold {
                    self.open(&mut machine);
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Success) => {
                machine.consecutive_failures = 0;
                machine.reset_timeout_current = self.inner.config.reset_timeout;
                self.transition(&mut machine, Phase::Closed);
            }
            (Phase::HalfOpen { .. }, Outcome::Failure) => {
                machine.consecutive_failures += 1;
                let doubled = machine.reset_timeout_current.saturating_mul(2);
                machine.reset_timeout_current = doubled.min(self.inner.config.reset_timeout_max);
                self.open(&mut machine);
            }
            (Phase::HalfOpen { .. }, Outcome::Abandoned) => {
                // The probe's caller gave up: no evidence either way, so the next call probes.
                let now = Instant::now();
                self.transition(&mut machine, Phase::Open { until: now });
            }
            (Phase::Closed, Outcome::Abandoned) => {}
            // Every transition into Open bumps the epoch, so no admitted call matches it.
            (Phase::Open { .. }, _) => unreachable!("a call admitted before the breaker opened"),
        }
    }

    fn open(&self, machine: &mut Machine) {
        machine.opened_count += 1;
        let until = Instant::now() + machine.reset_timeout_current;
        self.transition(machine, Phase::Open { until });
    }

    fn transition(&self, machine: &mut Machine, to: Phase) {
        let from = machine.phase;
        machine.phase = to;
        machine.epoch += 1;
        let breaker = self.inner.name.as_str();
        match to {
            Phase::Open { .. } => tracing::warn!(
                breaker,
                from = from.name(),
                to = to.name(),
                consecutive_failures = machine.consecutive_failures,
                reset_timeout_ms = duration_ms(machine.reset_timeout_current),
                "circuit breaker opened"
            ),
            Phase::HalfOpen { .. } | Phase::Closed => tracing::info!(
                breaker,
                from = from.name(),
                to = to.name(),
                "circuit breaker transition"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// The call's future was dropped before it finished.
    Abandoned,
}

/// A call let through; records `Abandoned` if dropped unfinished, so a cancelled probe does
/// not leave the breaker half-open forever.
struct Admission<'a> {
    breaker: &'a CircuitBreaker,
    epoch: u64,
    is_probe: bool,
    finished: bool,
}

impl<'a> Admission<'a> {
    fn new(breaker: &'a CircuitBreaker, epoch: u64, is_probe: bool) -> Self {
        Self {
            breaker,
            epoch,
            is_probe,
            finished: false,
        }
    }

    fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.breaker.record(self.epoch, outcome);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.finished && self.is_probe {
            self.breaker.record(self.epoch, Outcome::Abandoned);
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const SECOND: Duration = Duration::from_secs(1);

    fn breaker(failure_threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            "journal",
            BreakerConfig {
                failure_threshold,
                call_timeout: Duration::from_secs(2),
                reset_timeout: Duration::from_secs(10),
                reset_timeout_max: Duration::from_secs(35),
            },
        )
    }

    async fn succeed(breaker: &CircuitBreaker) -> Result<Result<u32, String>, Error> {
        breaker.call(async { Ok(1) }).await
    }

    async fn fail(breaker: &CircuitBreaker) -> Result<Result<u32, String>, Error> {
        breaker.call(async { Err("down".to_string()) }).await
    }

    fn assert_open(result: Result<Result<u32, String>, Error>, retry_after: Duration) {
        assert_eq!(
            result,
            Err(Error::BreakerOpen {
                breaker: "journal".to_string(),
                retry_after
            })
        );
    }

    /// Trips a closed breaker with `threshold` failures.
    async fn trip(breaker: &CircuitBreaker) {
        for _ in 0..breaker.config().failure_threshold {
            assert_eq!(fail(breaker).await, Ok(Err("down".to_string())));
        }
        assert_eq!(breaker.state().state, BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_of_consecutive_failures() {
        let breaker = breaker(3);
        fail(&breaker).await.unwrap().unwrap_err();
        fail(&breaker).await.unwrap().unwrap_err();
        assert_eq!(breaker.state().state, BreakerState::Closed);
        assert_eq!(breaker.state().consecutive_failures, 2);
        // A success in between starts the count again.
        assert_eq!(succeed(&breaker).await, Ok(Ok(1)));
        assert_eq!(breaker.state().consecutive_failures, 0);
        fail(&breaker).await.unwrap().unwrap_err();
        fail(&breaker).await.unwrap().unwrap_err();
        assert_eq!(breaker.state().state, BreakerState::Closed);
        fail(&breaker).await.unwrap().unwrap_err();
        let snapshot = breaker.state();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(snapshot.opened_count, 1);
        assert_eq!(snapshot.retry_after_ms, Some(10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn open_fails_fast_without_polling_the_call() {
        let breaker = breaker(1);
        trip(&breaker).await;
        tokio::time::advance(4 * SECOND).await;
        let polled = AtomicU32::new(0);
        let result = breaker
            .call(async {
                polled.fetch_add(1, Ordering::Relaxed);
                Ok::<u32, String>(1)
            })
            .await;
        assert_open(result, 6 * SECOND);
        assert_eq!(polled.load(Ordering::Relaxed), 0);
        assert_open(succeed(&breaker).await, 6 * SECOND);
        assert_eq!(breaker.state().rejected_count, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_probe_closes_it() {
        let breaker = breaker(2);
        trip(&breaker).await;
        tokio::time::advance(10 * SECOND).await;
        assert_eq!(breaker.state().state, BreakerState::HalfOpen);
        assert_eq!(breaker.state().retry_after_ms, None);
        assert_eq!(succeed(&breaker).await, Ok(Ok(1)));
        let snapshot = breaker.state();
        assert_eq!(snapshot.state, BreakerState::Closed);
        assert_eq!(snapshot.consecutive_failures, 0);
        assert_eq!(snapshot.opened_count, 1);
        // Closed again: a single failure does not reopen it with a threshold of 2.
        fail(&breaker).await.unwrap().unwrap_err();
        assert_eq!(breaker.state().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_with_a_doubled_capped_timeout() {
        let breaker = breaker(1);
        trip(&breaker).await;
        assert_eq!(breaker.state().reset_timeout_ms, 10_000);
        // Probes fail: 10 s, then 20 s, then 35 s (capped from 40), then 35 s again.
        for (waited, next) in [(10, 20), (20, 35), (35, 35), (35, 35)] {
            tokio::time::advance(Duration::from_secs(waited) - Duration::from_millis(1)).await;
            assert_eq!(breaker.state().state, BreakerState::Open);
            assert_open(succeed(&breaker).await, Duration::from_millis(1));
            tokio::time::advance(Duration::from_millis(1)).await;
            fail(&breaker).await.unwrap().unwrap_err();
            let snapshot = breaker.state();
            assert_eq!(snapshot.state, BreakerState::Open);
            assert_eq!(snapshot.retry_after_ms, Some(next * 1000));
            assert_eq!(snapshot.reset_timeout_ms, next * 1000);
        }
        assert_eq!(breaker.state().opened_count, 5);
        assert_eq!(breaker.state().consecutive_failures, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn success_brings_the_reset_timeout_back_to_base() {
        let breaker = breaker(1);
        trip(&breaker).await;
        tokio::time::advance(10 * SECOND).await;
        fail(&breaker).await.unwrap().unwrap_err();
        assert_eq!(breaker.state().reset_timeout_ms, 20_000);
        tokio::time::advance(20 * SECOND).await;
        succeed(&breaker).await.unwrap().unwrap();
        assert_eq!(breaker.state().state, BreakerState::Closed);
        assert_eq!(breaker.state().reset_timeout_ms, 10_000);
        trip(&breaker).await;
        assert_eq!(breaker.state().retry_after_ms, Some(10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_probe_runs_at_a_time() {
        let breaker = breaker(1);
        trip(&breaker).await;
        tokio::time::advance(10 * SECOND).await;
        let probe = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                breaker
                    .call(async {
                        tokio::time::sleep(SECOND).await;
                        Ok::<u32, String>(7)
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(breaker.state().state, BreakerState::HalfOpen);
        let mut others = Vec::new();
        for _ in 0..5 {
            let breaker = breaker.clone();
            others.push(tokio::spawn(async move { succeed(&breaker).await }));
        }
        for other in others {
            // Rejected until the probe's deadline (call timeout 2 s from its start).
            assert_open(other.await.unwrap(), 2 * SECOND);
        }
        assert_eq!(probe.await.unwrap(), Ok(Ok(7)));
        assert_eq!(breaker.state().state, BreakerState::Closed);
        assert_eq!(breaker.state().rejected_count, 5);
        assert_eq!(succeed(&breaker).await, Ok(Ok(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_timeout_fails_and_counts() {
        let breaker = breaker(2);
        let started = Instant::now();
        for _ in 0..2 {
            let result = breaker
                .call(async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<u32, String>(1)
                })
                .await;
            assert_eq!(
                result,
                Err(Error::Timeout {
                    actor: "journal".to_string(),
                    after: Duration::from_secs(2)
                })
            );
        }
        assert_eq!(started.elapsed(), 4 * SECOND);
        assert_eq!(breaker.state().state, BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_probe_reopens_it() {
        let breaker = breaker(1);
        trip(&breaker).await;
        tokio::time::advance(10 * SECOND).await;
        let result = breaker
            .call(std::future::pending::<Result<u32, String>>())
            .await;
        assert!(matches!(result, Err(Error::Timeout { .. })));
        assert_eq!(breaker.state().state, BreakerState::Open);
        assert_eq!(breaker.state().retry_after_ms, Some(20_000));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_classified_as_not_failures_do_not_trip_it() {
        #[derive(Debug, PartialEq)]
        enum JournalError {
            Conflict,
            Unavailable,
        }
        let breaker = breaker(2);
        let is_failure = |error: &JournalError| *error == JournalError::Unavailable;
        let unavailable = || async { Err::<u32, _>(JournalError::Unavailable) };
        let conflict = || async { Err::<u32, _>(JournalError::Conflict) };
        for _ in 0..10 {
            let result = breaker.call_with(conflict(), is_failure).await;
            assert_eq!(result, Ok(Err(JournalError::Conflict)));
        }
        assert_eq!(breaker.state().state, BreakerState::Closed);
        assert_eq!(breaker.state().consecutive_failures, 0);
        // A conflict proves the journal answered: it resets the count like a success.
        breaker
            .call_with(unavailable(), is_failure)
            .await
            .unwrap()
            .unwrap_err();
        breaker
            .call_with(conflict(), is_failure)
            .await
            .unwrap()
            .unwrap_err();
        breaker
            .call_with(unavailable(), is_failure)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(breaker.state().state, BreakerState::Closed);
        breaker
            .call_with(unavailable(), is_failure)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(breaker.state().state, BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_success_from_before_the_opening_does_not_close_it() {
        let breaker = breaker(2);
        let slow = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                breaker
                    .call(async {
                        tokio::time::sleep(SECOND).await;
                        Ok::<u32, String>(1)
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        trip(&breaker).await;
        assert_eq!(slow.await.unwrap(), Ok(Ok(1)));
        let snapshot = breaker.state();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(snapshot.consecutive_failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_failures_open_it_once() {
        let breaker = breaker(2);
        let mut calls = Vec::new();
        for _ in 0..6 {
            let breaker = breaker.clone();
            calls.push(tokio::spawn(async move {
                breaker
                    .call(async {
                        tokio::time::sleep(SECOND).await;
                        Err::<u32, _>("down".to_string())
                    })
                    .await
            }));
        }
        for call in calls {
            call.await.unwrap().unwrap().unwrap_err();
        }
        let snapshot = breaker.state();
        assert_eq!(snapshot.opened_count, 1);
        assert_eq!(snapshot.consecutive_failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_lets_the_next_call_probe() {
        let breaker = breaker(1);
        trip(&breaker).await;
        tokio::time::advance(10 * SECOND).await;
        let abandoned = tokio::time::timeout(
            SECOND / 2,
            breaker.call(std::future::pending::<Result<u32, String>>()),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(breaker.state().state, BreakerState::HalfOpen);
        assert_eq!(succeed(&breaker).await, Ok(Ok(1)));
        assert_eq!(breaker.state().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_serializes() {
        let breaker = breaker(1);
        trip(&breaker).await;
        let json = serde_json::to_value(breaker.state()).unwrap();
        assert_eq!(json["name"], "journal");
        assert_eq!(json["state"], "open");
        assert_eq!(json["retry_after_ms"], 10_000);
        assert_eq!(json["opened_count"], 1);
    }

    #[test]
    #[should_panic(expected = "must not exceed its maximum")]
    fn a_reset_timeout_above_its_maximum_is_refused() {
        let config = BreakerConfig {
            reset_timeout: Duration::from_secs(10),
            reset_timeout_max: Duration::from_secs(1),
            ..BreakerConfig::default()
        };
        let _ = CircuitBreaker::new("journal", config);
    }
}
