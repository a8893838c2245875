//! Supervisors: actors that start an ordered list of children, restart them when they fail
//! (one-for-one, one-for-all or rest-for-one) after an exponential backoff, and give up —
//! escalate to their own supervisor — when failures come faster than a restart intensity allows.
//!
//! ractor reports a child's panic, error or exit to the actor it is linked to, and restarts
//! nothing by itself; [`Supervisor`] is that linked actor. Its guarantees:
//!
//! - A child's failure never takes the supervisor down by itself; only exceeding the restart
//!   intensity does, and then deliberately.
//! - Children start in spec order; on a group restart they stop in reverse order and start again
//!   in spec order; stopping the supervisor stops them in reverse order.
//! - A child stopped through [`SupervisorMessage::StopChild`] stays stopped. Any other exit of a
//!   child — a panic, an error, or a stop it did not get from its supervisor — is a failure.
//! - Escalation stops every child (reverse order) before the supervisor fails, so a restarted
//!   subtree never overlaps the one it replaces.
//!
//! Exits are not the only failure: a child that opts in with [`ChildSpec::with_stall_timeout`]
//! and then records no [`Progress`] for that long is killed and restarted like a failed one.
//!
//! A `kill` of the supervisor skips its `post_stop`; ractor then terminates the children itself,
//! in no particular order.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::Error;
use crate::runtime::backoff::{Backoff, Jitter};
use crate::runtime::registry::{ActorInfo, ActorStatus as RegistryStatus, Registration, Registry};

/// Which children restart when one fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Only the failed child: its siblings do not depend on it.
    OneForOne,
    /// Every child: they only work together (e.g. a shard and its journal writer).
    OneForAll,
    /// The failed child and every child started after it, which depend on it.
    RestForOne,
}

impl Strategy {
    /// The indices, in start order, of the children that restart when child `failed` of
    /// `count` fails.
    pub fn affected(self, failed: usize, count: usize) -> Range<usize> {
        assert!(failed < count, "child {failed} of {count}");
        match self {
            Self::OneForOne => failed..failed + 1,
            Self::OneForAll => 0..count,
            Self::RestForOne => failed..count,
        }
    }
}

/// How a supervisor restarts its children, and when it gives up.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisionConfig {
    /// Which children restart when one fails.
    pub strategy: Strategy,
    /// The most restarts allowed within [`within`](Self::within); one more and the supervisor
    /// escalates.
    pub max_restarts: u32,
    /// The sliding window the restart limit counts over.
    pub within: Duration,
    /// The delay before a child's first restart; doubles with each consecutive restart.
    pub backoff_min: Duration,
    /// The longest delay before a restart.
    pub backoff_max: Duration,
    /// The largest fraction, in `[0, 1)`, taken off a delay at random.
    pub jitter: f64,
    /// Seed of the jitter's random source.
    pub jitter_seed: u64,
    /// How long a child may take to stop (on a group restart, a deliberate stop or shutdown)
    /// before it is killed.
    pub stop_timeout: Duration,
}

// The defaults must pass `validate`, and the window must span the backoff delays of the
// restarts it allows, or a child failing at once every time would never escalate.
const _: () = {
    let min = SupervisionConfig::BACKOFF_MIN_DEFAULT.as_millis();
    let max = SupervisionConfig::BACKOFF_MAX_DEFAULT.as_millis();
    assert!(min <= max);
    assert!(SupervisionConfig::JITTER_DEFAULT >= 0.0 && SupervisionConfig::JITTER_DEFAULT < 1.0);
    // Sum of min * 2^k for k < max_restarts is min * (2^max_restarts - 1), at most.
    let backoff_sum = min * ((1u128 << SupervisionConfig::MAX_RESTARTS_DEFAULT) - 1);
    assert!(backoff_sum < SupervisionConfig::WITHIN_DEFAULT.as_millis());
};

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            max_restarts: Self::MAX_RESTARTS_DEFAULT,
            within: Self::WITHIN_DEFAULT,
            backoff_min: Self::BACKOFF_MIN_DEFAULT,
            backoff_max: Self::BACKOFF_MAX_DEFAULT,
            jitter: Self::JITTER_DEFAULT,
            jitter_seed: Self::JITTER_SEED_DEFAULT,
            stop_timeout: Self::STOP_TIMEOUT_DEFAULT,
        }
    }
}

impl SupervisionConfig {
    /// Default [`SupervisionConfig::max_restarts`]: a child failing a sixth time within
    /// [`Self::WITHIN_DEFAULT`], despite backoff, is not going to recover by being restarted again.
    pub const MAX_RESTARTS_DEFAULT: u32 = 5;
    /// Default [`SupervisionConfig::within`]: long enough to span the first five backoff delays
    /// (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s), so a child that fails at once every time does escalate.
    pub const WITHIN_DEFAULT: Duration = Duration::from_secs(30);
    /// Default [`SupervisionConfig::backoff_min`]: long enough not to spin, short enough that a
    /// one-off failure costs little.
    pub const BACKOFF_MIN_DEFAULT: Duration = Duration::from_millis(100);
    /// Default [`SupervisionConfig::backoff_max`].
    pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(10);
    /// Default [`SupervisionConfig::jitter`]: delays shortened by up to a fifth.
    pub const JITTER_DEFAULT: f64 = 0.2;
    /// Default [`SupervisionConfig::jitter_seed`]. Nodes should seed from their node id so that
    /// their restarts do not line up.
    pub const JITTER_SEED_DEFAULT: u64 = 0x5EED_5EED_5EED_5EED;
    /// Default [`SupervisionConfig::stop_timeout`]: how long a child may take to stop before it is
    /// killed.
    pub const STOP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

    /// The default configuration with another strategy.
    pub fn with_strategy(strategy: Strategy) -> Self {
        Self {
            strategy,
            ..Self::default()
        }
    }

    /// Why this configuration cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(format!("jitter {} is outside [0, 1)", self.jitter));
        }
        if self.backoff_min > self.backoff_max {
            return Err(format!(
                "backoff_min {:?} exceeds backoff_max {:?}",
                self.backoff_min, self.backoff_max
            ));
        }
        if self.within.is_zero() {
            return Err("within is zero: no restart could ever be counted".to_string());
        }
        Ok(())
    }

    /// The backoff this configuration describes.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: self.backoff_min,
            max: self.backoff_max,
            jitter: self.jitter,
        }
    }
}

/// A counter a child bumps whenever it gets work done, so its supervisor can tell a stuck child
/// from a busy one (see [`ChildSpec::with_stall_timeout`]).
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Records that the child made progress.
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// How often progress was recorded.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a child's factory gets: where to link the child, its path for logs, and its progress
/// counter.
#[derive(Clone, Debug)]
pub struct ChildContext {
    /// The supervisor; spawn the child linked to it (`Actor::spawn_linked`).
    pub supervisor: ActorCell,
    /// The child's path in the tree, `<supervisor path>/<child name>`.
    pub path: String,
    /// This incarnation's progress counter; watched only if the spec has a stall timeout.
    pub progress: Progress,
    /// The node's actor tree, if the supervisor shows in one.
    pub registry: Option<Registry>,
}

/// The future a child factory returns: the started child's cell.
pub type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

type Factory = Arc<dyn Fn(ChildContext) -> SpawnFuture + Send + Sync>;

/// How to start (and restart) one child: its name among its siblings, a kind label for
/// observation, and a factory called on every start.
#[derive(Clone)]
pub struct ChildSpec {
    name: String,
    kind: String,
    factory: Factory,
    stall_timeout: Option<Duration>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A child started by `factory`, which must spawn it linked to
    /// [`ChildContext::supervisor`] (a child it leaves unlinked is linked afterwards, but a
    /// failure in between would go unseen).
    pub fn new<F, Fut>(name: impl Into<String>, kind: impl Into<String>, factory: F) -> Self
    where
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
    {
        Self {
            name: name.into(),
            kind: kind.into(),
            factory: Arc::new(move |context| Box::pin(factory(context))),
            stall_timeout: None,
        }
    }

    /// Watches the child's progress: if it records none on [`ChildContext::progress`] for
    /// `timeout`, it is killed and restarted as failed. Only for children that make progress
    /// at least that often while healthy (an idle child would look stuck).
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "a zero stall timeout would kill every child"
        );
        self.stall_timeout = Some(timeout);
        self
    }

    /// A child that is actor `A`, built afresh on each start by `make` (handler and
    /// arguments) and spawned linked, without a registered name.
    pub fn actor<A, F>(name: impl Into<String>, kind: impl Into<String>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        Self::new(name, kind, move |context: ChildContext| {
            let make = Arc::clone(&make);
            async move {
                let (handler, arguments) = make();
                let (actor, _join) =
                    A::spawn_linked(None, handler, arguments, context.supervisor).await?;
                Ok(actor.get_cell())
            }
        })
    }

    /// The child's name among its siblings.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's kind label.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

/// Where a child is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildStatus {
    /// Started and not known to have exited.
    Running,
    /// Exited (or stopped for a group restart) and waiting for its backoff to pass.
    Restarting,
    /// Stopped on request; not restarted.
    Stopped,
}

/// One child as its supervisor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStats {
    /// The child's name among its siblings.
    pub name: String,
    /// The child's kind label.
    pub kind: String,
    /// The child's path in the tree.
    pub path: String,
    /// Where the child is in its life.
    pub status: ChildStatus,
    /// How often the child was restarted (for its own failure or a sibling's).
    pub restarts: u32,
    /// Why the child last failed, if it ever did.
    pub last_failure: Option<String>,
}

/// A supervisor's view of its children, for the actor tree and for tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorStats {
    /// The supervisor's path.
    pub path: String,
    /// Its restart strategy.
    pub strategy: Strategy,
    /// Child failures it handled with a restart (what the restart intensity counts; a
    /// one-for-all restart of three children counts once).
    pub restarts_total: u64,
    /// Its children, in start order.
    pub children: Vec<ChildStats>,
}

/// Opaque token of a scheduled restart; a restart superseded by a later one (or cancelled by a
/// deliberate stop) is recognised as stale and dropped.
#[derive(Debug)]
pub struct RestartTicket(u64);

/// What a [`Supervisor`] answers to.
#[derive(Debug)]
pub enum SupervisorMessage {
    /// Report the supervisor's view of its children.
    Stats(RpcReplyPort<SupervisorStats>),
    /// Stop the named child and do not restart it; unknown names are ignored (and logged).
    StopChild(String),
    /// Internal: a backoff delay has passed; restart the children waiting for this ticket.
    #[doc(hidden)]
    Restart(RestartTicket),
    /// Internal: check that a watched child made progress since the last check.
    #[doc(hidden)]
    CheckProgress(ProgressCheck),
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for SupervisorMessage {}

/// Opaque token of a scheduled progress check: which incarnation of which child, and its
/// progress count when the check was scheduled.
#[derive(Debug)]
pub struct ProgressCheck {
    index: usize,
    incarnation: u64,
    seen: u64,
}

/// What a [`Supervisor`] is started with.
#[derive(Debug)]
pub struct SupervisorArgs {
    /// The supervisor's path in the tree, for logs and stats.
    pub path: String,
    /// Its strategy, restart intensity and backoff.
    pub config: SupervisionConfig,
    /// Its children, in start order. Names should be unique among siblings.
    pub children: Vec<ChildSpec>,
    /// Told when the supervisor escalates; set by the root, whose escalation nobody else sees.
    pub(crate) escalation: Option<oneshot::Sender<Error>>,
    /// The node's actor tree, where the supervisor and its children show (nested supervisors
    /// inherit it).
    pub registry: Option<Registry>,
}

impl SupervisorArgs {
    /// Arguments for a supervisor at `path`.
    pub fn new(
        path: impl Into<String>,
        config: SupervisionConfig,
        children: Vec<ChildSpec>,
    ) -> Self {
        Self {
            path: path.into(),
            config,
            children,
            escalation: None,
            registry: None,
        }
    }

    /// Shows the supervisor and its children (with status and restarts) in `registry`.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }
}

/// The supervisor actor. Spawn it with [`SupervisorArgs`], or nest it with [`Supervisor::spec`].
#[derive(Debug, Default)]
pub struct Supervisor;

impl Supervisor {
    /// How long [`Supervisor::stats`] waits for an answer.
    pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);

    /// A child spec for a nested supervisor of `children`; its path is derived from its parent's.
    pub fn spec(
        name: impl Into<String>,
        config: SupervisionConfig,
        children: Vec<ChildSpec>,
    ) -> ChildSpec {
        ChildSpec::new(name, "supervisor", move |context: ChildContext| {
            let mut arguments = SupervisorArgs::new(context.path, config.clone(), children.clone());
            arguments.registry = context.registry;
            async move {
                let (actor, _join) =
                    Supervisor::spawn_linked(None, Supervisor, arguments, context.supervisor)
                        .await?;
                Ok(actor.get_cell())
            }
        })
    }

    /// Ask `supervisor` for its stats, waiting at most [`Self::STATS_TIMEOUT`].
    pub async fn stats(supervisor: &ActorRef<SupervisorMessage>) -> Result<SupervisorStats, Error> {
        crate::runtime::ask::ask(supervisor, SupervisorMessage::Stats, Self::STATS_TIMEOUT).await
    }
}

/// One child slot: the spec and what the supervisor knows of the current incarnation.
struct Child {
    spec: ChildSpec,
    path: String,
    /// The running incarnation; `None` while restarting or stopped. Exits of any other
    /// incarnation (e.g. one stopped for a group restart) are ignored.
    cell: Option<ActorCell>,
    /// Counts starts, so a progress check meant for an earlier incarnation is recognised.
    incarnation: u64,
    progress: Progress,
    status: ChildStatus,
    restarts: u32,
    /// Failures in a row without a stable run in between; drives the backoff.
    failure_streak: u32,
    started_at: Instant,
    last_failure: Option<String>,
    /// The restart this child waits for.
    pending: Option<u64>,
    /// The child in the node's actor tree, when the supervisor was given a registry.
    registration: Option<Registration>,
}

impl Child {
    /// Records where the child is in its life, here and in the actor tree.
    fn set_status(&mut self, status: ChildStatus) {
        self.status = status;
        if let Some(registration) = &self.registration {
            registration.info().set_status(match status {
                ChildStatus::Running => RegistryStatus::Running,
                ChildStatus::Restarting => RegistryStatus::Restarting,
                ChildStatus::Stopped => RegistryStatus::Stopped,
            });
        }
    }

    fn stats(&self) -> ChildStats {
        ChildStats {
            name: self.spec.name.clone(),
            kind: self.spec.kind.clone(),
            path: self.path.clone(),
            status: self.status,
            restarts: self.restarts,
            last_failure: self.last_failure.clone(),
        }
    }
}

/// The state of a running [`Supervisor`].
pub struct SupervisorState {
    path: String,
    config: SupervisionConfig,
    children: Vec<Child>,
    /// When recent restarts happened, oldest first, for the restart intensity.
    restart_times: VecDeque<Instant>,
    restarts_total: u64,
    jitter: Jitter,
    next_ticket: u64,
    escalation: Option<oneshot::Sender<Error>>,
    /// Passed on to nested supervisors.
    registry: Option<Registry>,
    /// The supervisor itself in the actor tree, until it stops.
    _registration: Option<Registration>,
}

impl std::fmt::Debug for SupervisorState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SupervisorState")
            .field("path", &self.path)
            .field("children", &self.children.len())
            .field("restarts_total", &self.restarts_total)
            .finish_non_exhaustive()
    }
}

impl SupervisorState {
    fn stats(&self) -> SupervisorStats {
        SupervisorStats {
            path: self.path.clone(),
            strategy: self.config.strategy,
            restarts_total: self.restarts_total,
            children: self.children.iter().map(Child::stats).collect(),
        }
    }

    fn index_of(&self, id: ActorId) -> Option<usize> {
        self.children.iter().position(|child| {
            child.status == ChildStatus::Running
                && child.cell.as_ref().is_some_and(|cell| cell.get_id() == id)
        })
    }

    /// Counts a restart now; true if it exceeds the restart intensity.
    fn count_restart(&mut self, now: Instant) -> bool {
        while let Some(oldest) = self.restart_times.front() {
            if now.duration_since(*oldest) >= self.config.within {
                self.restart_times.pop_front();
            } else {
                break;
            }
        }
        self.restart_times.push_back(now);
        self.restarts_total += 1;
        self.restart_times.len() > self.config.max_restarts as usize
    }
}

/// Starts the child in `child`'s slot, linked to `supervisor`.
async fn start_child(
    supervisor: &ActorRef<SupervisorMessage>,
    index: usize,
    child: &mut Child,
    registry: Option<Registry>,
) -> Result<(), SpawnErr> {
    let progress = Progress::default();
    let context = ChildContext {
        supervisor: supervisor.get_cell(),
        path: child.path.clone(),
        progress: progress.clone(),
        registry,
    };
    let cell = (child.spec.factory)(context).await?;
    let linked_to_us = cell
        .try_get_supervisor()
        .is_some_and(|parent| parent.get_id() == supervisor.get_id());
    // A child that already exited has unlinked itself after reporting to us: leave it be.
    let exited = cell.get_status() >= ActorStatus::Stopping;
    if !linked_to_us && !exited {
        tracing::warn!(child = %child.path, "child factory did not link the child; linking it now");
        cell.link(supervisor.get_cell());
    }
    child.cell = Some(cell);
    child.set_status(ChildStatus::Running);
    child.started_at = Instant::now();
    child.pending = None;
    child.incarnation += 1;
    child.progress = progress;
    if let Some(timeout) = child.spec.stall_timeout {
        schedule_progress_check(supervisor, index, child, timeout);
    }
    Ok(())
}

fn schedule_progress_check(
    supervisor: &ActorRef<SupervisorMessage>,
    index: usize,
    child: &Child,
    timeout: Duration,
) {
    let check = ProgressCheck {
        index,
        incarnation: child.incarnation,
        seen: child.progress.count(),
    };
    supervisor.send_after(timeout, move || SupervisorMessage::CheckProgress(check));
}

/// Kills a watched child that made no progress since the last check, as a failure.
async fn on_check_progress(
    myself: &ActorRef<SupervisorMessage>,
    state: &mut SupervisorState,
    check: ProgressCheck,
) -> Result<(), ActorProcessingErr> {
    let child = &mut state.children[check.index];
    let current = child.status == ChildStatus::Running && child.incarnation == check.incarnation;
    let Some(timeout) = child.spec.stall_timeout.filter(|_| current) else {
        return Ok(());
    };
    if child.progress.count() != check.seen {
        schedule_progress_check(myself, check.index, child, timeout);
        return Ok(());
    }
    if let Some(cell) = child.cell.take() {
        // Killed, not stopped: a stuck handler would never reach the stop.
        cell.kill();
        let _ = cell.wait(Some(state.config.stop_timeout)).await;
    }
    let reason = format!("stalled: no progress for {timeout:?}");
    on_child_failed(myself, state, check.index, reason).await
}

/// Stops `cell` and waits for it, killing it if it does not stop within `timeout`.
async fn stop_cell(cell: ActorCell, timeout: Duration) {
    let stopped = cell
        .stop_and_wait(Some("stopped by supervisor".to_string()), Some(timeout))
        .await;
    if stopped.is_err() {
        // Either it is already gone (harmless) or it ignored the stop: a stuck child must not
        // hold up its siblings' restart or the node's shutdown.
        cell.kill();
        let _ = cell.wait(Some(timeout)).await;
    }
}

/// Stops the running children in `range`, latest first, leaving their slots with `status`.
async fn stop_children(state: &mut SupervisorState, range: Range<usize>, status: ChildStatus) {
    for index in range.rev() {
        let child = &mut state.children[index];
        if child.status == ChildStatus::Stopped {
            continue;
        }
        child.set_status(status);
        child.pending = None;
        if let Some(cell) = child.cell.take() {
            stop_cell(cell, state.config.stop_timeout).await;
        }
    }
}

/// Gives up: stops every child and returns the error the supervisor fails with, so that its
/// own supervisor sees `ActorFailed`.
async fn escalate(state: &mut SupervisorState) -> ActorProcessingErr {
    let error = Error::RestartIntensityExceeded {
        supervisor: state.path.clone(),
        max_restarts: state.config.max_restarts,
        within: state.config.within,
    };
    let count = state.children.len();
    stop_children(state, 0..count, ChildStatus::Stopped).await;
    match state.escalation.take() {
        Some(root) => {
            tracing::error!(supervisor = %state.path, %error, "root supervisor gave up; the node's actors are stopped");
            let _ = root.send(error.clone());
        }
        None => {
            tracing::warn!(supervisor = %state.path, %error, "supervisor gave up; escalating to its supervisor");
        }
    }
    Box::new(error)
}

/// Handles child `index` having failed (or exited unasked) with `reason`: counts the restart,
/// stops the children the strategy takes down with it and schedules their restart.
async fn on_child_failed(
    myself: &ActorRef<SupervisorMessage>,
    state: &mut SupervisorState,
    index: usize,
    reason: String,
) -> Result<(), ActorProcessingErr> {
    let now = Instant::now();
    let within = state.config.within;
    let child = &mut state.children[index];
    child.cell = None;
    child.set_status(ChildStatus::Restarting);
    child.last_failure = Some(reason.clone());
    // A child that ran through a whole intensity window was healthy: its next backoff starts
    // from the minimum again.
    if now.duration_since(child.started_at) >= within {
        child.failure_streak = 0;
    }
    child.failure_streak += 1;
    let streak = child.failure_streak;
    tracing::warn!(
        supervisor = %state.path,
        child = %child.path,
        kind = %child.spec.kind,
        %reason,
        streak,
        "child failed"
    );
    if state.count_restart(now) {
        return Err(escalate(state).await);
    }
    let affected = state.config.strategy.affected(index, state.children.len());
    stop_children(state, affected.clone(), ChildStatus::Restarting).await;
    let delay = state.config.backoff().delay(streak, &mut state.jitter);
    let ticket = state.next_ticket;
    state.next_ticket += 1;
    for child in &mut state.children[affected] {
        if child.status == ChildStatus::Restarting {
            child.pending = Some(ticket);
        }
    }
    tracing::info!(supervisor = %state.path, child = %state.children[index].path, ?delay, "restart scheduled");
    myself.send_after(delay, move || {
        SupervisorMessage::Restart(RestartTicket(ticket))
    });
    Ok(())
}

/// Restarts, in start order, the children waiting for `ticket`.
async fn on_restart(
    myself: &ActorRef<SupervisorMessage>,
    state: &mut SupervisorState,
    ticket: u64,
) -> Result<(), ActorProcessingErr> {
    let registry = state.registry.clone();
    for index in 0..state.children.len() {
        let child = &mut state.children[index];
        if child.pending != Some(ticket) {
            continue;
        }
        match start_child(myself, index, child, registry.clone()).await {
            Ok(()) => {
                child.restarts += 1;
                if let Some(registration) = &child.registration {
                    registration.info().record_restart();
                }
                tracing::info!(supervisor = %state.path, child = %child.path, restarts = child.restarts, "child restarted");
            }
            Err(error) => {
                // A failed restart is one more failure: it counts toward the intensity and
                // schedules the next attempt (for this child and those the strategy adds).
                let reason = format!("restart failed: {error}");
                return on_child_failed(myself, state, index, reason).await;
            }
        }
    }
    Ok(())
}

/// Stops the named child for good.
async fn on_stop_child(state: &mut SupervisorState, name: &str) {
    let Some(index) = state
        .children
        .iter()
        .position(|child| child.spec.name == name)
    else {
        tracing::warn!(supervisor = %state.path, child = name, "no such child to stop");
        return;
    };
    tracing::info!(supervisor = %state.path, child = %state.children[index].path, "stopping child on request");
    stop_children(state, index..index + 1, ChildStatus::Stopped).await;
}

impl Actor for Supervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let SupervisorArgs {
            path,
            config,
            children,
            escalation,
            registry,
        } = arguments;
        if let Err(reason) = config.validate() {
            return Err(Box::new(Error::StartFailed {
                actor: path,
                reason: format!("invalid supervision config: {reason}"),
            }));
        }
        let now = Instant::now();
        let register = |path: &str, kind: &str| -> Result<Option<Registration>, Error> {
            registry
                .as_ref()
                .map(|registry| registry.register(Arc::new(ActorInfo::new(path, kind))))
                .transpose()
        };
        // A nested supervisor is already in the tree as its parent's child.
        let shown_by_parent = registry
            .as_ref()
            .is_some_and(|registry| registry.get(&path).is_some());
        let registration = if shown_by_parent {
            None
        } else {
            register(&path, "supervisor").map_err(Box::new)?
        };
        if let Some(registration) = &registration {
            registration.info().set_status(RegistryStatus::Running);
        }
        let mut children_built = Vec::with_capacity(children.len());
        for spec in children {
            let child_path = format!("{path}/{}", spec.name);
            let child_registration = register(&child_path, &spec.kind).map_err(Box::new)?;
            children_built.push((child_path, spec, child_registration));
        }
        let mut state = SupervisorState {
            children: children_built
                .into_iter()
                .map(|(child_path, spec, registration)| Child {
                    path: child_path,
                    spec,
                    registration,
                    cell: None,
                    incarnation: 0,
                    progress: Progress::default(),
                    status: ChildStatus::Restarting,
                    restarts: 0,
                    failure_streak: 0,
                    started_at: now,
                    last_failure: None,
                    pending: None,
                })
                .collect(),
            registry,
            _registration: registration,
            jitter: Jitter::new(config.jitter_seed),
            path,
            config,
            restart_times: VecDeque::new(),
            restarts_total: 0,
            next_ticket: 0,
            escalation,
        };
        for index in 0..state.children.len() {
            if let Err(error) = start_child(
                &myself,
                index,
                &mut state.children[index],
                state.registry.clone(),
            )
            .await
            {
                // Like OTP's start_link: a tree that cannot start is not half-started.
                let actor = state.children[index].path.clone();
                stop_children(&mut state, 0..index, ChildStatus::Stopped).await;
                return Err(Box::new(Error::StartFailed {
                    actor,
                    reason: error.to_string(),
                }));
            }
        }
        tracing::info!(supervisor = %state.path, children = state.children.len(), "supervisor started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::Stats(reply) => {
                // The caller may have given up waiting; nothing to do about it.
                let _ = reply.send(state.stats());
                Ok(())
            }
            SupervisorMessage::StopChild(name) => {
                on_stop_child(state, &name).await;
                Ok(())
            }
            SupervisorMessage::Restart(RestartTicket(ticket)) => {
                on_restart(&myself, state, ticket).await
            }
            SupervisorMessage::CheckProgress(check) => {
                on_check_progress(&myself, state, check).await
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, format!("failed: {error}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.unwrap_or_else(|| "no reason given".to_string());
                (cell, format!("exited unasked: {reason}"))
            }
            _ => return Ok(()),
        };
        match state.index_of(cell.get_id()) {
            Some(index) => on_child_failed(&myself, state, index, reason).await,
            // An incarnation this supervisor already stopped (or a stranger): nothing to do.
            None => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let count = state.children.len();
        stop_children(state, 0..count, ChildStatus::Stopped).await;
        tracing::info!(supervisor = %state.path, "supervisor stopped");
        Ok(())
    }
}
