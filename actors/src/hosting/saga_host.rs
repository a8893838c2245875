//! The saga host: runs process managers (sagas) as persistent entities and carries out what
//! they decide.
//!
//! A saga is hosted like any entity (its own stream, recovery, persist-then-reply). What it
//! adds is a loop around it: every input's reply names the commands the input's events call
//! for ([`ProcessManager::effects`]); the host hands each to the application's
//! [`Dispatcher`], which carries it out (e.g. asks an account) and maps the outcome back to
//! saga inputs, which the host delivers in turn. The reply also names the saga's next
//! deadline; the host's timer sends a tick then, so lost messages are retried and failed steps
//! compensated by the saga's own rules. After a restart, [`SagaHost::resume`] ticks every
//! unfinished saga in the journal: each recovers from its events and, at its deadline, re-sends what it still
//! waits on. Effects are therefore carried out at least once; the sagas' commands are
//! idempotent, which makes their effect exactly once.
//!
//! Every reply of every input the host delivers (from callers, from effects, from the book
//! feed, from timers) passes through one place, so the host can wake whoever waits for a saga
//! to reach some state ([`SagaHost::watch`]) with no polling: a caller registers a [`Watch`]
//! before it sends, and the first reply that satisfies the watch's condition is handed to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tracing::warn;
use tradefloor_domain::Timestamp;
use tradefloor_domain::saga::{OrderSaga, SagaCommand, SagaInput, SagaReply};
use tradefloor_persistence::{Filter, Journal};

use crate::error::Error;
use crate::hosting::entity::Persistent;
use crate::hosting::log_fold::{Folding, LogFold};
use crate::hosting::region::{ShardRegion, shard_of};
use crate::routing::remote::{self, Call, Forward, Forwarding};

/// A boxed, sendable future: what a [`Dispatcher`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A persistent aggregate that also decides commands for others: a saga. Its replies are
/// cloneable, so one can be handed to whoever [watches](SagaHost::watch) the saga.
pub trait ProcessManager: Persistent<Reply: Clone> {
    /// What the saga asks of the rest of the system.
    type Effect: Send + 'static;

    /// The commands a reply says to carry out now.
    fn effects(reply: &Self::Reply) -> Vec<Self::Effect>;

    /// When the saga next wants a tick (None: it waits on nothing, or is finished).
    fn deadline(reply: &Self::Reply) -> Option<Timestamp>;

    /// The input that tells a saga the time.
    fn tick(now: Timestamp) -> Self::Command;

    /// Whether the saga is done for good: nothing awaited, nothing to retry, so
    /// [`SagaHost::resume`] need not tick it. The default (`false`) ticks every saga.
    fn finished(&self) -> bool {
        false
    }
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

    fn finished(&self) -> bool {
        self.is_finished()
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
    /// Most [watches](SagaHost::watch) registered at once (over all sagas); past it a new
    /// watch is refused with `Overloaded`. Each is one caller waiting, e.g. an HTTP request
    /// waiting for its order's placement, so this bounds the memory they hold.
    pub watches_max: usize,
}

impl Default for SagaHostConfig {
    fn default() -> Self {
        Self {
            ask_deadline: Duration::from_secs(10),
            resume_page_events: 10_000,
            watches_max: 65_536,
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
    watches: Mutex<Watches<P>>,
}

/// The condition a watch waits for.
type Condition<P> = Box<dyn Fn(&<P as tradefloor_domain::Aggregate>::Reply) -> bool + Send>;

/// One registered watch: its number, its condition, and where the satisfying reply goes.
struct Watcher<P: ProcessManager> {
    number: u64,
    condition: Condition<P>,
    wake: oneshot::Sender<P::Reply>,
}

/// The watches by saga id. Bounded by [`SagaHostConfig::watches_max`]; a watch leaves the map
/// when it is woken or when its [`Watch`] is dropped (timed out, or its caller gone).
struct Watches<P: ProcessManager> {
    by_saga: HashMap<String, Vec<Watcher<P>>>,
    count: usize,
    last_number: u64,
}

impl<P: ProcessManager> Default for Watches<P> {
    fn default() -> Self {
        Self {
            by_saga: HashMap::new(),
            count: 0,
            last_number: 0,
        }
    }
}

impl<P: ProcessManager> Watches<P> {
    /// Hands `reply` to every watch of `saga_id` whose condition it satisfies, and removes them.
    fn wake(&mut self, saga_id: &str, reply: &P::Reply) {
        let Some(watchers) = self.by_saga.get_mut(saga_id) else {
            return;
        };
        let before = watchers.len();
        let mut index = 0;
        while index < watchers.len() {
            if (watchers[index].condition)(reply) {
                // A closed receiver only means the caller stopped waiting just now.
                let _ = watchers.swap_remove(index).wake.send(reply.clone());
            } else {
                index += 1;
            }
        }
        self.count -= before - watchers.len();
        if watchers.is_empty() {
            self.by_saga.remove(saga_id);
        }
    }

    fn remove(&mut self, saga_id: &str, number: u64) {
        let Some(watchers) = self.by_saga.get_mut(saga_id) else {
            return;
        };
        let before = watchers.len();
        watchers.retain(|watcher| watcher.number != number);
        self.count -= before - watchers.len();
        if watchers.is_empty() {
            self.by_saga.remove(saga_id);
        }
    }
}

/// A registered wait for a saga's reply to satisfy a condition (see [`SagaHost::watch`]).
/// Dropping it (after [`Watch::wait`] returns, or earlier) removes it from the host.
pub struct Watch<P: ProcessManager> {
    inner: Arc<Inner<P>>,
    saga_id: String,
    number: u64,
    woken: Option<oneshot::Receiver<P::Reply>>,
}

impl<P: ProcessManager> Watch<P> {
    /// Waits up to `timeout` for the first reply satisfying the condition; `None` if none came
    /// in time. Either way the watch is gone from the host afterwards.
    pub async fn wait(mut self, timeout: Duration) -> Option<P::Reply> {
        let woken = self.woken.take()?;
        match tokio::time::timeout(timeout, woken).await {
            Ok(Ok(reply)) => Some(reply),
            _ => None,
        }
    }
}

impl<P: ProcessManager> Drop for Watch<P> {
    fn drop(&mut self) {
        self.inner
            .watches
            .lock()
            .expect("no panics under the lock")
            .remove(&self.saga_id, self.number);
    }
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
            watches: Mutex::new(Watches::default()),
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

    /// [`SagaHost::send`] to a saga the caller vouches is new (an id it just generated): the
    /// saga starts from its default state without reading the journal (see
    /// [`ShardRegion::ask_new`]). Had the id been used, the write conflicts and the input
    /// fails; the saga recovers before its next input.
    pub async fn send_new(&self, saga_id: &str, input: P::Command) -> Result<P::Reply, Error> {
        send_routed(
            &self.inner,
            saga_id,
            input,
            Sending::New,
            Forwarding::Allowed,
        )
        .await
    }

    /// [`SagaHost::send`] (or [`SagaHost::send_new`] if `new`) whose reply's effects the
    /// caller carries out itself, delivering their answers later (e.g. as one
    /// `SagaInput::Answers`); the host still sets the saga's timer, so if the caller fails,
    /// the saga's deadline re-sends what it waits on.
    pub async fn send_driven(
        &self,
        saga_id: &str,
        input: P::Command,
        new: bool,
    ) -> Result<P::Reply, Error> {
        let sending = if new {
            Sending::NewDriven
        } else {
            Sending::ExistingDriven
        };
        send_routed(&self.inner, saga_id, input, sending, Forwarding::Allowed).await
    }

    /// Delivers `(saga id, input)` pairs, in order per saga (sagas concurrently), carrying
    /// out what their replies call for. On a node of its own, each saga's first input is
    /// queued before this returns, so whatever the caller asks that saga next comes after it;
    /// the rest goes on in the background (in a cluster all of it is routed in the background). An input that cannot be delivered is logged:
    /// the saga's deadline retries what it would have moved on.
    pub fn deliver(&self, inputs: Vec<(String, P::Command)>) {
        for (saga_id, inputs) in by_saga::<P>(inputs) {
            let inner = self.inner.clone();
            if inner.region.remoting().is_some() {
                // In a cluster the saga may live on another node: routed as usual.
                tokio::spawn(deliver_in_order(inner, saga_id, inputs));
                continue;
            }
            let mut inputs = inputs.into_iter();
            let Some(first) = inputs.next() else { continue };
            let rest: Vec<P::Command> = inputs.collect();
            let deadline = inner.config.ask_deadline;
            let reply = inner.region.ask_queued(&saga_id, first, deadline);
            tokio::spawn(async move {
                match reply {
                    Ok(reply) => match reply.await {
                        Ok(reply) => after_reply(&inner, &saga_id, &reply, true),
                        Err(error) => warn!(saga = %saga_id, %error, "saga input not delivered"),
                    },
                    // A full queue or a stopping shard: the saga's deadline retries.
                    Err(error) => warn!(saga = %saga_id, %error, "saga input not queued"),
                }
                deliver_in_order(inner, saga_id, rest).await;
            });
        }
    }

    /// Serves a saga input another node routed here (see [`crate::routing::remote`]): delivered by
    /// this host if the saga's shard is here, else `Fenced`, so the caller routes again.
    pub async fn serve(&self, call: Call) -> remote::Reply {
        let path = self.inner.region.path();
        let Some(sending) = Sending::ALL
            .into_iter()
            .find(|sending| sending.operation() == call.operation)
        else {
            return Err(Error::Failed {
                actor: path.to_owned(),
                reason: format!("no operation {:?} on a saga host", call.operation),
            });
        };
        let input: P::Command = remote::decode(path, &call.body)?;
        let reply = send_routed(
            &self.inner,
            &call.entity_id,
            input,
            sending,
            Forwarding::Refused,
        )
        .await?;
        remote::encode(path, &reply)
    }

    /// Whether `operation` is one [`SagaHost::serve`] serves (the others go to its region).
    pub fn serves(operation: &str) -> bool {
        Sending::ALL
            .into_iter()
            .any(|sending| sending.operation() == operation)
    }

    /// Registers a wait for saga `saga_id`: the first reply the host sees from it (to any
    /// input, whoever sent it) for which `condition` holds wakes the returned [`Watch`].
    /// Register before sending the input that may lead there, so no reply is missed.
    /// `Overloaded` when [`SagaHostConfig::watches_max`] watches are already registered.
    pub fn watch(
        &self,
        saga_id: &str,
        condition: impl Fn(&P::Reply) -> bool + Send + 'static,
    ) -> Result<Watch<P>, Error> {
        let (wake, woken) = oneshot::channel();
        let mut watches = self.inner.watches.lock().expect("no panics under the lock");
        if watches.count >= self.inner.config.watches_max {
            return Err(Error::Overloaded {
                actor: format!("{}/watches", self.inner.region.path()),
                capacity: self.inner.config.watches_max,
            });
        }
        watches.last_number += 1;
        let number = watches.last_number;
        watches
            .by_saga
            .entry(saga_id.to_owned())
            .or_default()
            .push(Watcher {
                number,
                condition: Box::new(condition),
                wake,
            });
        watches.count += 1;
        Ok(Watch {
            inner: self.inner.clone(),
            saga_id: saga_id.to_owned(),
            number,
            woken: Some(woken),
        })
    }

    /// How many watches are registered (for tests and the actor tree).
    pub fn watches(&self) -> usize {
        self.inner
            .watches
            .lock()
            .expect("no panics under the lock")
            .count
    }

    /// Ticks every unfinished saga with events in `journal`: each recovers and, at its
    /// deadline, re-sends what it still waits on. Run once at start, after a crash. Returns how
    /// many were ticked.
    ///
    /// The log is read once, in order, and the sagas folded as they come (their own events
    /// and the account's and the book's facts about them, see [`LogFold`]), so a saga that is
    /// [finished](ProcessManager::finished) is not ticked (a tick costs its recovery from the
    /// journal). Only unfinished sagas are held in memory meanwhile; a saga the fold cannot be
    /// sure of (events it cannot decode here, events after it finished) is ticked anyway.
    pub async fn resume(&self, journal: &Journal) -> Result<usize, Error> {
        self.resume_where(journal, |_| true).await
    }

    /// [`SagaHost::resume`] for the sagas whose id `select` picks (in a cluster: those of the
    /// shards this node just took over).
    pub async fn resume_where(
        &self,
        journal: &Journal,
        select: impl Fn(&str) -> bool,
    ) -> Result<usize, Error> {
        self.resume_from(journal, Vec::new(), 0, select).await
    }

    /// [`SagaHost::resume_where`] from an index of unfinished work instead of the whole log:
    /// `unfinished` names every saga that was unfinished after offset `after` (a read model
    /// that commits its offset with its rows gives both), so only the log after `after` is
    /// read. Each of `unfinished` that `select` picks is ticked (a finished one recovers and
    /// does nothing), and so is every saga of the log after `after` that the fold does not
    /// see finish. Memory: the unfinished sagas only, never the finished ones.
    pub async fn resume_from(
        &self,
        journal: &Journal,
        unfinished: Vec<String>,
        after: u64,
        select: impl Fn(&str) -> bool,
    ) -> Result<usize, Error> {
        let mut seen: HashSet<String> = unfinished.into_iter().filter(|id| select(id)).collect();
        seen.extend(self.fold_log_after(journal, after, &select).await?);
        self.tick_all(seen.into_iter().collect()).await
    }

    /// The sagas `select` picks with events after `after` that the fold does not see finish
    /// (those it cannot be sure of included).
    async fn fold_log_after(
        &self,
        journal: &Journal,
        mut after: u64,
        select: &impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, Error> {
        let page_events = self.inner.config.resume_page_events;
        let mut fold = LogFold::<P>::new(page_events);
        let mut unsure: HashSet<String> = HashSet::new();
        let mut foldings = Vec::new();
        loop {
            let page = journal
                .read_all(after, page_events, &Filter::All)
                .await
                .map_err(|error| Error::Persistence {
                    actor: self.inner.region.path().to_owned(),
                    reason: error.to_string(),
                })?;
            let Some(last) = page.last() else { break };
            after = last.global_offset;
            for stored in &page {
                fold.fold(
                    stored,
                    |id| select(id) && !unsure.contains(id),
                    &mut foldings,
                );
                for folding in foldings.drain(..) {
                    match folding {
                        Folding::Changed(id) => {
                            if fold.get(&id).is_some_and(|saga| saga.state.finished()) {
                                fold.remove(&id);
                            }
                        }
                        Folding::Unsure(id) => {
                            unsure.insert(id);
                        }
                    }
                }
            }
        }
        Ok(fold.into_ids().chain(unsure).collect())
    }

    /// Ticks each of `seen`; returns how many.
    async fn tick_all(&self, seen: Vec<String>) -> Result<usize, Error> {
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
    send_routed(
        inner,
        saga_id,
        input,
        Sending::Existing,
        Forwarding::Allowed,
    )
    .await
}

/// Whether a saga input goes to a saga that may exist, or to one the caller vouches is new,
/// and whether the host carries out the reply's effects or the caller does (a placement
/// carries out its saga's first commands itself); also the operation's name in a remote
/// [`Call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    Existing,
    New,
    ExistingDriven,
    NewDriven,
}

impl Sending {
    const ALL: [Sending; 4] = [
        Self::Existing,
        Self::New,
        Self::ExistingDriven,
        Self::NewDriven,
    ];

    fn operation(self) -> &'static str {
        match self {
            Self::Existing => "saga_send",
            Self::New => "saga_send_new",
            Self::ExistingDriven => "saga_send_driven",
            Self::NewDriven => "saga_send_new_driven",
        }
    }

    fn is_new(self) -> bool {
        matches!(self, Self::New | Self::NewDriven)
    }

    /// Whether the caller carries out the reply's effects.
    fn is_driven(self) -> bool {
        matches!(self, Self::ExistingDriven | Self::NewDriven)
    }
}

/// Delivers `input` on the node hosting the saga's shard: there the host sets the saga's
/// timer, wakes its watches and carries out its effects, so a saga is driven by one node.
async fn send_routed<P: ProcessManager>(
    inner: &Arc<Inner<P>>,
    saga_id: &str,
    input: P::Command,
    sending: Sending,
    forwarding: Forwarding,
) -> Result<P::Reply, Error> {
    let deadline = inner.config.ask_deadline;
    let Some(remoting) = inner.region.remoting() else {
        return send_here(inner, saga_id, input, sending, deadline).await;
    };
    let shard = shard_of(saga_id, inner.region.shard_count());
    let what = format!("{}/{saga_id}", inner.region.path());
    remoting
        .route(
            shard,
            &what,
            deadline,
            forwarding,
            |left| send_here(inner, saga_id, input.clone(), sending, left),
            Forward {
                target: inner.region.path(),
                operation: sending.operation(),
                entity_id: saga_id,
                body: &input,
            },
        )
        .await
}

/// Delivers `input` to the saga in a shard running on this node (`Stopped` if it does not),
/// then follows up its reply.
async fn send_here<P: ProcessManager>(
    inner: &Arc<Inner<P>>,
    saga_id: &str,
    input: P::Command,
    sending: Sending,
    deadline: Duration,
) -> Result<P::Reply, Error> {
    let reply = inner
        .region
        .ask_local(saga_id, input, deadline, sending.is_new())
        .await?;
    after_reply(inner, saga_id, &reply, !sending.is_driven());
    Ok(reply)
}

/// What follows every reply the host gets: the saga's timer set, its watches woken, its
/// effects carried out in the background (unless the caller carries them out).
fn after_reply<P: ProcessManager>(
    inner: &Arc<Inner<P>>,
    saga_id: &str,
    reply: &P::Reply,
    carry_out_effects: bool,
) {
    let earliest = inner
        .timers
        .lock()
        .expect("no panics under the lock")
        .set(saga_id, P::deadline(reply));
    if earliest {
        inner.timers_changed.notify_one();
    }
    inner
        .watches
        .lock()
        .expect("no panics under the lock")
        .wake(saga_id, reply);
    if !carry_out_effects {
        return;
    }
    for effect in P::effects(reply) {
        tokio::spawn(carry_out(inner.clone(), saga_id.to_owned(), effect));
    }
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
        deliver_all(inner, inputs).await;
    })
}

/// Delivers `(saga id, input)` pairs: one task per saga concerned (e.g. a taker and the
/// makers it traded with), each delivering that saga's inputs in order, so the sagas persist
/// concurrently; the first saga's inputs are delivered before this returns.
async fn deliver_all<P: ProcessManager>(inner: Arc<Inner<P>>, inputs: Vec<(String, P::Command)>) {
    let mut groups = by_saga::<P>(inputs).into_iter();
    let own = groups.next();
    for (target, inputs) in groups {
        tokio::spawn(deliver_in_order(inner.clone(), target, inputs));
    }
    if let Some((target, inputs)) = own {
        deliver_in_order(inner, target, inputs).await;
    }
}

/// The inputs grouped by saga, in order within each, the sagas in order of first mention.
fn by_saga<P: ProcessManager>(inputs: Vec<(String, P::Command)>) -> Vec<(String, Vec<P::Command>)> {
    let mut by_saga: Vec<(String, Vec<P::Command>)> = Vec::new();
    for (target, input) in inputs {
        match by_saga.iter_mut().find(|(saga_id, _)| *saga_id == target) {
            Some((_, inputs)) => inputs.push(input),
            None => by_saga.push((target, vec![input])),
        }
    }
    by_saga
}

async fn deliver_in_order<P: ProcessManager>(
    inner: Arc<Inner<P>>,
    target: String,
    inputs: Vec<P::Command>,
) {
    for input in inputs {
        if let Err(error) = send(&inner, &target, input).await {
            // The saga's deadline retries whatever this input would have moved on.
            warn!(saga = %target, %error, "saga input not delivered");
        }
    }
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
