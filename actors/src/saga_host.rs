//! The saga host: runs process managers (sagas) as persistent entities and carries out what
//! they decide.
//!
//! A saga is hosted like any entity (its own stream, recovery, persist-then-reply). What it
//! adds is a loop around it: every input's reply names the commands the input's events call
//! for ([`ProcessManager::effects`]); the host hands each to the application's
//! [`Dispatcher`], which carries it out (e.g. asks an account) and maps the outcome back to
//! saga inputs, which the host delivers in turn. The reply also names the saga's next
//! deadline; the host's timer sends a tick then, so lost messages are retried and failed steps
//! compensated by the saga's own rules. After a restart, [`SagaHost::resume`] ticks every saga
//! in the journal: each recovers from its events and, at its deadline, re-sends what it still
//! waits on. Effects are therefore carried out at least once; the sagas' commands are
//! idempotent, which makes their effect exactly once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;
use tradefloor_domain::Timestamp;
use tradefloor_domain::saga::{OrderSaga, SagaCommand, SagaInput, SagaReply};
use tradefloor_persistence::{Filter, Journal};

use crate::entity::Persistent;
use crate::error::Error;
use crate::region::ShardRegion;

/// A boxed, sendable future: what a [`Dispatcher`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A persistent aggregate that also decides commands for others: a saga.
pub trait ProcessManager: Persistent {
    /// What the saga asks of the rest of the system.
    type Effect: Send + 'static;

    /// The commands a reply says to carry out now.
    fn effects(reply: &Self::Reply) -> Vec<Self::Effect>;

    /// When the saga next wants a tick (None: it waits on nothing, or is finished).
    fn deadline(reply: &Self::Reply) -> Option<Timestamp>;

    /// The input that tells a saga the time.
    fn tick(now: Timestamp) -> Self::Command;
}

impl ProcessManager for OrderSaga {
    type Effect = SagaCommand;

    fn effects(reply: &SagaReply) -> Vec<SagaCommand> {
        reply.commands.clone()
    }

    fn deadline(reply: &SagaReply) -> Option<Timestamp> {
        reply.deadline
    }

    fn tick(now: Timestamp) -> SagaInput {
        SagaInput::Tick { now }
    }
}

/// Carries out a saga's effects. The application supplies it: it knows where accounts and
/// books live and how their answers map to saga inputs.
pub trait Dispatcher<P: ProcessManager>: Send + Sync + 'static {
    /// Carries out `effect` of saga `saga_id` and returns the inputs that result, as
    /// `(saga id, input)` pairs (usually for `saga_id`; a book's trades also concern the
    /// sagas of the resting orders). Failures become inputs too, or nothing: the saga's
    /// deadline retries what got no answer.
    fn dispatch(&self, saga_id: String, effect: P::Effect) -> BoxFuture<Vec<(String, P::Command)>>;
}

/// The host's clock: the time sagas are told. A function so tests can drive it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock, in microseconds since the epoch.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    })
}

/// The saga host's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaHostConfig {
    /// How long the host waits for a saga to take an input.
    pub ask_deadline: Duration,
    /// Saga events read per page by [`SagaHost::resume`].
    pub resume_page_events: usize,
}

impl Default for SagaHostConfig {
    fn default() -> Self {
        Self {
            ask_deadline: Duration::from_secs(10),
            resume_page_events: 10_000,
        }
    }
}

/// Runs the sagas of kind `P` on this node.
pub struct SagaHost<P: ProcessManager> {
    inner: Arc<Inner<P>>,
}

impl<P: ProcessManager> Clone for SagaHost<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<P: ProcessManager> {
    region: ShardRegion<P>,
    dispatcher: Arc<dyn Dispatcher<P>>,
    clock: Clock,
    config: SagaHostConfig,
    timers: Mutex<Timers>,
    timers_changed: Notify,
}

/// Each saga's next deadline, and the same ordered by time.
#[derive(Default)]
struct Timers {
    by_saga: BTreeMap<String, Timestamp>,
    by_time: BTreeSet<(Timestamp, String)>,
}

impl Timers {
    fn set(&mut self, saga_id: &str, deadline: Option<Timestamp>) -> bool {
        if let Some(previous) = self.by_saga.remove(saga_id) {
            self.by_time.remove(&(previous, saga_id.to_owned()));
        }
        let Some(deadline) = deadline else {
            return false;
        };
        let earliest = self
            .by_time
            .first()
            .is_none_or(|(first, _)| deadline < *first);
        self.by_saga.insert(saga_id.to_owned(), deadline);
        self.by_time.insert((deadline, saga_id.to_owned()));
        earliest
    }

    fn pop_due(&mut self, now: Timestamp) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((deadline, saga_id)) = self.by_time.first().cloned() {
            if deadline > now {
                break;
            }
            self.by_time.remove(&(deadline, saga_id.clone()));
            self.by_saga.remove(&saga_id);
            due.push(saga_id);
        }
        due
    }
}

impl<P: ProcessManager> SagaHost<P> {
    /// A host for the sagas in `region`, carrying out their effects with `dispatcher`. Starts
    /// the timer task on the current runtime; it ends when the last handle is dropped.
    pub fn new(
        region: ShardRegion<P>,
        dispatcher: impl Dispatcher<P>,
        clock: Clock,
        config: SagaHostConfig,
    ) -> Self {
        let inner = Arc::new(Inner {
            region,
            dispatcher: Arc::new(dispatcher),
            clock,
            config,
            timers: Mutex::new(Timers::default()),
            timers_changed: Notify::new(),
        });
        tokio::spawn(run_timers(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The region the sagas live in.
    pub fn region(&self) -> &ShardRegion<P> {
        &self.inner.region
    }

    /// The host's current time.
    pub fn now(&self) -> Timestamp {
        (self.inner.clock)()
    }

    /// Delivers `input` to saga `saga_id`, then carries out the effects its reply names (in
    /// the background) and sets its timer. Returns the saga's reply.
    pub async fn send(&self, saga_id: &str, input: P::Command) -> Result<P::Reply, Error> {
        send(&self.inner, saga_id, input).await
    }

    /// Ticks every saga with events in `journal`: each recovers and, at its deadline, re-sends
    /// what it still waits on. Run once at start, after a crash. Returns how many were ticked.
    pub async fn resume(&self, journal: &Journal) -> Result<usize, Error> {
        let prefix = format!("{}|", P::KIND);
        let mut seen = HashSet::new();
        let mut after = 0;
        loop {
            let page = journal
                .read_all(
                    after,
                    self.inner.config.resume_page_events,
                    &Filter::Kind(P::KIND.to_owned()),
                )
                .await
                .map_err(|error| Error::Persistence {
                    actor: self.inner.region.path().to_owned(),
                    reason: error.to_string(),
                })?;
            let Some(last) = page.last() else { break };
            after = last.global_offset;
            for stored in &page {
                if let Some(saga_id) = stored.stream.strip_prefix(&prefix) {
                    seen.insert(saga_id.to_owned());
                }
            }
        }
        // A saga that cannot be ticked now (e.g. its database is briefly locked by what a
        // crashed node left behind) is tried again a few rounds later before giving up.
        let mut pending: Vec<&String> = seen.iter().collect();
        for round in 1..=RESUME_ROUNDS_MAX {
            let mut failed = Vec::new();
            let mut last_error = None;
            for saga_id in pending {
                if let Err(error) = self.send(saga_id, P::tick(self.now())).await {
                    warn!(saga = %saga_id, %error, round, "saga not resumed yet");
                    failed.push(saga_id);
                    last_error = Some(error);
                }
            }
            match last_error {
                None => return Ok(seen.len()),
                Some(error) if round == RESUME_ROUNDS_MAX => return Err(error),
                Some(_) => tokio::time::sleep(RESUME_ROUND_PAUSE * round).await,
            }
            pending = failed;
        }
        unreachable!("the last round returns")
    }
}

async fn send<P: ProcessManager>(
    inner: &Arc<Inner<P>>,
    saga_id: &str,
    input: P::Command,
) -> Result<P::Reply, Error> {
    let reply = inner
        .region
        .ask(saga_id, input, inner.config.ask_deadline)
        .await?;
    let earliest = inner
        .timers
        .lock()
        .expect("no panics under the lock")
        .set(saga_id, P::deadline(&reply));
    if earliest {
        inner.timers_changed.notify_one();
    }
    for effect in P::effects(&reply) {
        tokio::spawn(carry_out(inner.clone(), saga_id.to_owned(), effect));
    }
    Ok(reply)
}

/// Carries out one effect and delivers what it produced. Boxed: it sends, and sending
/// carries out effects.
fn carry_out<P: ProcessManager>(
    inner: Arc<Inner<P>>,
    saga_id: String,
    effect: P::Effect,
) -> BoxFuture<()> {
    Box::pin(async move {
        let inputs = inner.dispatcher.dispatch(saga_id, effect).await;
        for (target, input) in inputs {
            if let Err(error) = send(&inner, &target, input).await {
                // The saga's deadline retries whatever this input would have moved on.
                warn!(saga = %target, %error, "saga input not delivered");
            }
        }
    })
}

/// Rounds [`SagaHost::resume`] makes over the sagas it could not tick.
const RESUME_ROUNDS_MAX: u32 = 4;

/// The pause before resume's next round, times the round number.
const RESUME_ROUND_PAUSE: Duration = Duration::from_millis(250);

/// The longest the timer task sleeps before looking again (and noticing a dropped host).
const TIMER_IDLE_WAIT: Duration = Duration::from_secs(1);

async fn run_timers<P: ProcessManager>(inner: std::sync::Weak<Inner<P>>) {
    loop {
        let Some(host) = inner.upgrade() else { return };
        let now = (host.clock)();
        let (due, next) = {
            let mut timers = host.timers.lock().expect("no panics under the lock");
            let due = timers.pop_due(now);
            (due, timers.by_time.first().map(|(deadline, _)| *deadline))
        };
        for saga_id in due {
            let host = host.clone();
            tokio::spawn(async move {
                let tick = P::tick((host.clock)());
                if let Err(error) = send(&host, &saga_id, tick).await {
                    warn!(saga = %saga_id, %error, "tick not delivered");
                }
            });
        }
        // Waits at most a second, holding the host meanwhile: once every other handle is
        // gone, the next round finds nothing to upgrade and the task ends.
        let wait = next.map_or(TIMER_IDLE_WAIT, |deadline| {
            let micros = u64::try_from(deadline.micros() - now.micros()).unwrap_or(0);
            Duration::from_micros(micros).min(TIMER_IDLE_WAIT)
        });
        let _ = tokio::time::timeout(wait, host.timers_changed.notified()).await;
    }
}
