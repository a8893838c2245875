//! Projections: read models kept in SQL tables, fed from the global log, exactly once.
//!
//! A [`Projection`] turns batches of stored events into writes on its own tables. The
//! [`ProjectionActor`] hosting it follows the global log after its stored offset with a
//! [`LogTail`] (the log bus while in step, the database to catch up), and for each batch
//! opens a transaction, lets the projection apply the batch, records the batch's last
//! offset with [`OffsetStore::commit_in`] in that same transaction, and commits. Guarantees
//! (each tested, on SQLite and on PostgreSQL):
//!
//! - **Exactly once.** The read-model writes of a batch and the offset that says the batch is
//!   done become durable together or not at all. A failure anywhere (an error, a panic, a
//!   kill, the process dying) leaves the tables and the offset at the end of the last
//!   committed batch, and a restart resumes from that offset: no event is skipped, none is
//!   applied twice.
//! - **In order.** Events reach [`Projection::apply`] in global-offset order, so the events of
//!   one stream arrive in sequence order.
//! - **Storage failures fail the actor.** An error of the database fails the actor, so its
//!   [`Supervisor`] restarts it (with backoff, within its restart intensity).
//! - **A poison event is parked, not a stop.** When the projection's own code fails a batch,
//!   the batch is applied again one event at a time to find the event that fails; that event
//!   is tried again with backoff, up to [`DeadLetterPolicy::attempts_max`] attempts (at once
//!   if [`Projection::blame`] says it can never apply, e.g. it cannot be decoded), then
//!   parked in the dead-letter table (see [`dead_letter_table`](super::dead_letter_table)) in
//!   the transaction that moves the offset past it, and the projection goes on. A projection
//!   that keeps an order per key ([`Projection::order_key`]) parks the key's later events
//!   behind it. Retries an operator asks for are applied within a poll interval. A failure
//!   that is the read model's or its database's ([`Blame::ReadModel`]: a table missing, the
//!   disk failing) parks nothing: it fails the actor, as storage failures do.
//! - **No busy loop, no polling while in step.** A caught-up projection is woken when the
//!   journal publishes a batch on the log bus, and reads the database only to catch up, or
//!   after [`ProjectionConfig::poll_interval`] without a batch (for events other processes
//!   appended). While more is available, batches follow one another at once (each after any
//!   queued stats request).
//! - **Rebuild.** [`rebuild`] clears the read model ([`Projection::reset`]) and its offset in
//!   one transaction, then replays from offset 0; it ends with the same tables as a
//!   projection that ran since the beginning.
//!
//! [`Supervisor`]: crate::runtime::supervisor::Supervisor

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tradefloor_persistence::{
    Advance, Error as StorageError, Filter, Journal, OffsetStore, StoredEvent, Transaction,
};

use crate::error::Error;
use crate::hosting::dead_letter_table::{DeadLetter, DeadLetterPolicy, DeadLetterTable};
use crate::hosting::log_tail::{BATCH_INTERVAL_MIN_DEFAULT, LogTail, TailWaker};
use crate::runtime::supervisor::{ChildContext, ChildSpec, Progress};

/// The offset-store partition a projection commits under: a projection reads the whole
/// (filtered) log as one partition.
pub const PROJECTION_PARTITION: u32 = 0;

/// Most parked events one check for retries applies.
const RETRIES_PER_CHECK_MAX: usize = 256;

/// A read model: SQL tables built from the events of the global log.
///
/// The methods return `impl Future + Send` (write them as `async fn`): the actor is generic
/// over its projection, so nothing needs a trait object and no future is boxed.
///
/// On SQLite, write before you read inside a transaction (an upsert rather than a select then
/// an update): a deferred transaction that reads first and writes later cannot wait for the
/// journal's writer and fails with "database is locked" (which fails and restarts the actor,
/// so it is slow rather than wrong).
pub trait Projection: Send + 'static {
    /// What [`apply`](Self::apply) and [`reset`](Self::reset) fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The projection's name: its key in the offset store. Renaming it starts it from
    /// offset 0.
    fn name(&self) -> &str;

    /// Which events of the global log it reads.
    fn filter(&self) -> Filter {
        Filter::All
    }

    /// Applies `events` (at least one, in offset order) to the read model, inside
    /// `transaction`, which the host commits together with the offset of the last event. An
    /// error discards the transaction: nothing of the batch is kept.
    fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[Arc<StoredEvent>],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Empties the read model, inside `transaction`, for [`rebuild`]: afterwards its tables
    /// must look as they did before the first event was applied.
    fn reset(
        &mut self,
        transaction: &mut Transaction,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The key whose events must be applied in order, if the read model needs one (an
    /// account's balances: its stream): once an event of the key is parked, the key's later
    /// events are parked behind it. `None` (the default): events are independent.
    fn order_key(&self, _event: &StoredEvent) -> Option<String> {
        None
    }

    /// Whose fault `error` is: the event's (the default: tried again, then parked), a
    /// poison event's (parked at once), or the read model's (the actor fails).
    fn blame(&self, _error: &Self::Error) -> Blame {
        Blame::Event
    }
}

/// Whose fault a failed batch is, which decides what becomes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The event cannot apply as it is and never will (it cannot be decoded): it is parked
    /// at once.
    Poison,
    /// The event's data was refused (a constraint, a value out of range): it is tried again
    /// with backoff, then parked.
    Event,
    /// The read model or its database is broken (a table missing, the disk failing): the
    /// actor fails and its supervisor restarts it; nothing is parked.
    ReadModel,
}

impl Blame {
    /// A database's error: the event's if the database refused its data, else the read
    /// model's.
    pub fn of_storage(error: &StorageError) -> Self {
        if error.is_data_refused() {
            Blame::Event
        } else {
            Blame::ReadModel
        }
    }
}

/// How a projection reads the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionConfig {
    /// Most events read and applied in one transaction. Larger batches commit less often;
    /// on SQLite each batch holds the database's single write lock while it applies.
    pub batch_events_max: usize,
    /// How long a caught-up projection waits for a batch on the log bus before it reads the
    /// database anyway (for events appended by other processes, which no bus here carries).
    pub poll_interval: Duration,
    /// The shortest time between two wake-ups by the log bus: batches published meanwhile are
    /// taken together, so a busy log makes fewer, larger transactions (each a turn at SQLite's
    /// write lock and an fsync) at the cost of trailing the log by up to this much.
    pub batch_interval_min: Duration,
    /// When an event the projection fails on is parked.
    pub dead_letters: DeadLetterPolicy,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            batch_events_max: 512,
            poll_interval: Duration::from_millis(100),
            batch_interval_min: BATCH_INTERVAL_MIN_DEFAULT,
            dead_letters: DeadLetterPolicy::default(),
        }
    }
}

impl ProjectionConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_events_max == 0 {
            return Err("batch_events_max is zero: no event could ever be applied".to_owned());
        }
        if self.poll_interval.is_zero() {
            return Err("poll_interval is zero: a caught-up projection would spin".to_owned());
        }
        if self.dead_letters.attempts_max == 0 {
            return Err(
                "dead_letters.attempts_max is zero: an event is tried at least once".to_owned(),
            );
        }
        Ok(())
    }
}

/// Why a projection stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError<E: std::error::Error + 'static> {
    /// Reading the log, loading, resetting or committing the offset, or committing the
    /// transaction failed. Usually transient: the supervisor restarts the projection.
    #[error("projection {projection}: storage failed: {source}")]
    Storage {
        /// The projection's name.
        projection: String,
        /// What the persistence layer said.
        #[source]
        source: StorageError,
    },
    /// A holder of a later lease epoch committed this projection's offset: this holder is
    /// stale (its lease was taken over while it ran). Nothing of its batch was kept; it
    /// applies nothing more and waits to be stopped.
    #[error("projection {projection}: fenced: {source}")]
    Fenced {
        /// The projection's name.
        projection: String,
        /// What the offset store said.
        #[source]
        source: StorageError,
    },
    /// The projection's own code failed on a batch; nothing of the batch was kept. If it
    /// fails the same way every time, the supervisor escalates: fix the projection.
    #[error("projection {projection}: read model failed on offsets {first}..={last}: {source}")]
    ReadModel {
        /// The projection's name.
        projection: String,
        /// The batch's first offset.
        first: u64,
        /// The batch's last offset.
        last: u64,
        /// What the projection said.
        #[source]
        source: E,
    },
}

/// A projection's progress, for the actor tree and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProjectionStats {
    /// The projection's name.
    pub name: String,
    /// The last offset applied and committed.
    pub offset: u64,
    /// Events in the last batch applied (0 if none yet in this incarnation).
    pub last_batch: usize,
    /// Every event at or below it has been read (and applied or parked if it matched the
    /// filter): past [`offset`](Self::offset) when the last events did not match.
    pub read_to: u64,
    /// The journal's last offset minus [`read_to`](Self::read_to): events not yet read.
    pub lag: u64,
    /// Batches applied by this incarnation.
    pub batches: u64,
    /// Events applied by this incarnation.
    pub events: u64,
    /// Reads of the database by this incarnation (including empty ones); batches taken from
    /// the log bus are not reads.
    pub polls: u64,
    /// Whether a holder of a later lease epoch took over: this one applies nothing more.
    pub fenced: bool,
    /// Events it has parked in the dead-letter table and not yet applied or given up.
    pub dead_letters: u64,
    /// The last rebuild asked of this incarnation, if any.
    pub rebuild: Option<RebuildProgress>,
}

/// How far a rebuild has come.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RebuildProgress {
    /// The journal's head when it began: the rebuild is done once the offset reaches it.
    pub target: u64,
    /// When it began, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// How long it took, once done.
    pub took_ms: Option<u64>,
}

/// Where the supervisor's current incarnation of a projection can be reached (each start
/// puts its reference here), for operators' requests: stats and rebuilds.
#[derive(Clone, Debug, Default)]
pub struct ProjectionHandle(Arc<std::sync::Mutex<Option<ActorRef<ProjectionMessage>>>>);

impl ProjectionHandle {
    /// The running incarnation, if one has started.
    pub fn actor(&self) -> Option<ActorRef<ProjectionMessage>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The running incarnation's progress; `None` if none has started.
    pub async fn stats(&self) -> Result<Option<ProjectionStats>, Error> {
        let Some(actor) = self.actor() else {
            return Ok(None);
        };
        let timeout = STATS_TIMEOUT;
        crate::runtime::ask::ask(&actor, ProjectionMessage::Stats, timeout)
            .await
            .map(Some)
    }

    /// Asks the running incarnation to rebuild (see [`ProjectionMessage::Rebuild`]); `None`
    /// if none has started.
    pub async fn rebuild(&self) -> Result<Option<Result<u64, String>>, Error> {
        let Some(actor) = self.actor() else {
            return Ok(None);
        };
        crate::runtime::ask::ask(&actor, ProjectionMessage::Rebuild, STATS_TIMEOUT)
            .await
            .map(Some)
    }

    fn set(&self, actor: ActorRef<ProjectionMessage>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(actor);
    }
}

/// What a [`ProjectionActor`] answers to.
#[derive(Debug)]
pub enum ProjectionMessage {
    /// Report progress.
    Stats(RpcReplyPort<ProjectionStats>),
    /// Rebuild the read model in place: empty it, forget its offset and its dead letters (in
    /// one transaction) and apply the log again from offset 0, as it goes on from there.
    /// Answers the journal's head it rebuilds up to (its progress is in the stats), or why
    /// it cannot (a fenced holder, a failing database).
    Rebuild(RpcReplyPort<Result<u64, String>>),
    /// Internal: apply the next batch, if any.
    #[doc(hidden)]
    Poll,
    /// Internal: the log bus has a batch, or the poll interval passed without one.
    #[doc(hidden)]
    Wake,
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for ProjectionMessage {}

/// What a [`ProjectionActor`] is started with.
#[derive(Debug)]
pub struct ProjectionArgs<P> {
    /// The read model.
    pub projection: P,
    /// The journal it reads, and whose database holds its tables and offset.
    pub journal: Journal,
    /// Batch size and poll interval.
    pub config: ProjectionConfig,
    /// Recorded on every batch and wake-up, for a supervisor's stall watch.
    pub progress: Option<Progress>,
    /// The lease epoch this node holds the projection at, in a cluster: its offset commits
    /// are fenced by it (see [`Advance`]). `None` on a node that holds the journal alone: it
    /// takes the stored epoch over.
    pub epoch: Option<u64>,
}

/// Follows the log after an offset and applies batches; shared by the actor and [`rebuild`].
#[derive(Debug)]
struct Feed {
    name: String,
    journal: Journal,
    tail: LogTail,
    /// The last offset applied (or parked) and committed.
    offset: u64,
    /// The lease epoch its commits are fenced by.
    epoch: u64,
    stats: ProjectionStats,
    policy: DeadLetterPolicy,
    /// The event the projection failed on, and how many times, while it is tried again.
    failing: Option<(u64, u32)>,
    /// Keys with a parked event, each with its first parked offset: their later events are
    /// parked behind it.
    held: BTreeMap<String, u64>,
}

/// Why a batch was not applied (nothing of it was kept).
#[derive(Debug, thiserror::Error)]
enum Failure<E: std::error::Error + 'static> {
    /// The projection's code failed.
    #[error("{0}")]
    Projection(E),
    /// The database refused the batch's writes when it committed.
    #[error("the batch's commit failed: {0}")]
    Commit(StorageError),
}

impl<E: std::error::Error + 'static> Failure<E> {
    fn blame<P: Projection<Error = E>>(&self, projection: &P) -> Blame {
        match self {
            Failure::Projection(error) => projection.blame(error),
            Failure::Commit(error) => Blame::of_storage(error),
        }
    }

    /// The error the actor fails with (the read model's fault, at `offset`).
    fn into_error(self, projection: &str, offset: u64) -> ProjectionError<E> {
        match self {
            Failure::Projection(source) => ProjectionError::ReadModel {
                projection: projection.to_owned(),
                first: offset,
                last: offset,
                source,
            },
            Failure::Commit(source) => storage(projection, source),
        }
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Applied (or parked) this many events; 0 if the tail had none.
    Applied(usize),
    /// The projection failed on an event: try it again after this long.
    Backoff(Duration),
}

impl Feed {
    /// A feed from `offset` on (the offset the projection committed last).
    fn new(
        name: String,
        filter: Filter,
        journal: Journal,
        config: &ProjectionConfig,
        offset: u64,
        epoch: u64,
    ) -> Self {
        Self {
            epoch,
            stats: ProjectionStats {
                name: name.clone(),
                ..ProjectionStats::default()
            },
            tail: LogTail::new(journal.clone(), filter, offset, config.batch_events_max),
            name,
            journal,
            offset,
            policy: config.dead_letters,
            failing: None,
            held: BTreeMap::new(),
        }
    }

    fn dead_letters(&self) -> DeadLetterTable {
        DeadLetterTable::new(self.journal.read_models().clone())
    }

    /// Loads what the projection parked before (its held keys and how many letters).
    async fn load_dead_letters(&mut self) -> Result<(), StorageError> {
        let table = self.dead_letters();
        table.create().await?;
        let (count, held) = table.held(&self.name).await?;
        self.held = held;
        self.stats.dead_letters = count;
        metrics::gauge!("tradefloor_parked_events", "consumer" => self.name.clone())
            .set(count as f64);
        Ok(())
    }

    /// Applies the next batch the tail has, with its offset in one transaction. If the
    /// projection fails it, applies its events one by one to find the one that fails, which
    /// is tried again after a backoff or parked (see the [module](self)).
    async fn step<P: Projection>(
        &mut self,
        projection: &mut P,
    ) -> Result<Step, ProjectionError<P::Error>> {
        let events = self.tail.next().await;
        self.stats.polls = self.tail.database_reads();
        let events = events.map_err(|source| storage(&self.name, source))?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Step::Applied(0));
        };
        assert!(
            first.global_offset > self.offset,
            "the tail yields offsets after the cursor"
        );
        assert!(
            last.global_offset >= first.global_offset,
            "the tail yields offsets in order"
        );
        if self.failing.is_none() {
            match self.apply(projection, &events).await? {
                Ok(()) => return Ok(Step::Applied(events.len())),
                Err(source)
                    if events.len() == 1 || source.blame(projection) == Blame::ReadModel =>
                {
                    return self.failed(projection, &events[0], source).await;
                }
                Err(source) => {
                    let (first, last) = (first.global_offset, last.global_offset);
                    tracing::warn!(projection = %self.name, first, last, error = %source,
                        "batch failed; applying its events one by one");
                }
            }
        }
        for event in &events {
            if let Err(source) = self.apply(projection, std::slice::from_ref(event)).await? {
                return self.failed(projection, event, source).await;
            }
            self.failing = None;
        }
        Ok(Step::Applied(events.len()))
    }

    /// Applies `events` in one transaction with the offset moved past them; events of a held
    /// key are parked behind it instead. The outer error is the storage's (it fails the
    /// actor), the inner the projection's (nothing of the batch was kept).
    async fn apply<P: Projection>(
        &mut self,
        projection: &mut P,
        events: &[Arc<StoredEvent>],
    ) -> Result<Result<(), Failure<P::Error>>, ProjectionError<P::Error>> {
        let last = events.last().expect("a batch").global_offset;
        let (kept, held) = self.split_held(projection, events);
        // On SQLite this queues behind this process's other writers rather than poll for the
        // database's write lock, and runs on the read models' own write connection.
        let storage = |source| storage(&self.name, source);
        let mut transaction = self.journal.begin_read_models().await.map_err(storage)?;
        if !kept.is_empty()
            && let Err(source) = projection.apply(&mut transaction, &kept).await
        {
            // Dropping the transaction would roll it back too; saying so is clearer.
            let _ = transaction.rollback().await;
            return Ok(Err(Failure::Projection(source)));
        }
        for letter in &held {
            DeadLetterTable::park_in(&mut transaction, letter)
                .await
                .map_err(storage)?;
        }
        match self.commit_batch(transaction, last).await {
            Ok(()) => {}
            // Another holder moved the offset: not this batch's fault.
            Err(
                source @ (StorageError::OffsetFenced { .. } | StorageError::StaleOffset { .. }),
            ) => {
                return Err(self.commit_error(source));
            }
            // On SQLite a statement's error (a constraint, a trigger) shows at the commit.
            Err(source) => return Ok(Err(Failure::Commit(source))),
        }
        self.offset = last;
        self.parked(&held);
        self.stats.last_batch = kept.len();
        self.stats.batches += 1;
        self.stats.events += kept.len() as u64;
        Ok(Ok(()))
    }

    /// The events to apply, and letters for those of a held key.
    fn split_held<'a, P: Projection>(
        &self,
        projection: &P,
        events: &'a [Arc<StoredEvent>],
    ) -> (std::borrow::Cow<'a, [Arc<StoredEvent>]>, Vec<DeadLetter>) {
        // The usual case: nothing held, the batch applies as it came (no copy).
        if self.held.is_empty() {
            return (std::borrow::Cow::Borrowed(events), Vec::new());
        }
        let mut kept = Vec::with_capacity(events.len());
        let mut held = Vec::new();
        for event in events {
            let key = projection.order_key(event);
            match key.as_ref().and_then(|key| self.held.get(key)) {
                Some(&first) => {
                    let error = format!("held behind the parked event at offset {first}");
                    let mut letter = DeadLetterTable::letter(&self.name, event, error, 0);
                    letter.order_key = key;
                    letter.held_by = Some(first);
                    held.push(letter);
                }
                None => kept.push(event.clone()),
            }
        }
        (std::borrow::Cow::Owned(kept), held)
    }

    /// Counts letters parked, holding their keys.
    fn parked(&mut self, letters: &[DeadLetter]) {
        for letter in letters {
            if let Some(key) = &letter.order_key {
                self.held
                    .entry(key.clone())
                    .or_insert(letter.event.global_offset);
            }
            self.stats.dead_letters += 1;
            metrics::counter!("tradefloor_parked_events_total", "consumer" => self.name.clone())
                .increment(1);
        }
        metrics::gauge!("tradefloor_parked_events", "consumer" => self.name.clone())
            .set(self.stats.dead_letters as f64);
    }

    /// The projection failed on `event`: back off and try it again, or park it.
    async fn failed<P: Projection>(
        &mut self,
        projection: &mut P,
        event: &StoredEvent,
        source: Failure<P::Error>,
    ) -> Result<Step, ProjectionError<P::Error>> {
        let offset = event.global_offset;
        let attempts = match self.failing {
            Some((failing, attempts)) if failing == offset => attempts + 1,
            _ => 1,
        };
        metrics::counter!("tradefloor_consumer_failures_total", "consumer" => self.name.clone())
            .increment(1);
        let blame = source.blame(projection);
        if blame == Blame::ReadModel {
            return Err(source.into_error(&self.name, offset));
        }
        if attempts < self.policy.attempts_max && blame == Blame::Event {
            let delay = self.policy.delay(attempts);
            tracing::warn!(projection = %self.name, offset, attempts, ?delay, error = %source,
                "event failed; trying it again");
            self.failing = Some((offset, attempts));
            // The event and what follows it come again from the database.
            self.tail.seek(self.offset);
            return Ok(Step::Backoff(delay));
        }
        let mut letter = DeadLetterTable::letter(&self.name, event, source.to_string(), attempts);
        letter.order_key = projection.order_key(event);
        let storage = |source| storage(&self.name, source);
        let mut transaction = self.journal.begin_read_models().await.map_err(storage)?;
        DeadLetterTable::park_in(&mut transaction, &letter)
            .await
            .map_err(storage)?;
        self.commit(transaction, offset).await?;
        tracing::error!(projection = %self.name, offset, stream = %event.stream,
            name = %event.name, attempts, error = %letter.error, "event parked as a dead letter");
        self.offset = offset;
        self.failing = None;
        self.tail.seek(offset);
        self.parked(std::slice::from_ref(&letter));
        Ok(Step::Applied(1))
    }

    /// Applies the letters an operator asked to retry, in offset order; a letter that fails
    /// again stays (with the letters of its key behind it). Then reloads what is parked.
    async fn retry_parked<P: Projection>(
        &mut self,
        projection: &mut P,
    ) -> Result<(), ProjectionError<P::Error>> {
        let table = self.dead_letters();
        let name = self.name.clone();
        let storage = |source| storage(&name, source);
        let letters = table
            .retries(&self.name, RETRIES_PER_CHECK_MAX)
            .await
            .map_err(storage)?;
        // Per key whose retry failed (an unkeyed letter is its own): the failed offset and
        // the error, then the key's letters behind it.
        let mut failed: BTreeMap<String, (Vec<u64>, String)> = BTreeMap::new();
        for letter in letters {
            let offset = letter.event.global_offset;
            let slot = letter
                .order_key
                .clone()
                .unwrap_or_else(|| format!("#{offset}"));
            if let Some((offsets, _)) = failed.get_mut(&slot) {
                offsets.push(offset);
                continue;
            }
            let outcome = self.retry_one(projection, letter.event).await?;
            let label = if outcome.is_ok() { "applied" } else { "failed" };
            metrics::counter!("tradefloor_parked_events_retried_total",
                "consumer" => self.name.clone(), "outcome" => label)
            .increment(1);
            match outcome {
                Ok(()) => tracing::info!(projection = %self.name, offset, "dead letter applied"),
                Err(error) => {
                    tracing::warn!(projection = %self.name, offset, %error, "dead letter failed again");
                    failed.insert(slot, (vec![offset], error));
                }
            }
        }
        for (offsets, error) in failed.values() {
            table
                .retry_failed(&self.name, offsets, error)
                .await
                .map_err(storage)?;
        }
        self.load_dead_letters().await.map_err(storage)?;
        Ok(())
    }

    /// Applies a parked event and deletes its letter, in one transaction; the inner error says
    /// why it failed again (nothing was kept).
    async fn retry_one<P: Projection>(
        &self,
        projection: &mut P,
        event: StoredEvent,
    ) -> Result<Result<(), String>, ProjectionError<P::Error>> {
        let offset = event.global_offset;
        let storage = |source| storage(&self.name, source);
        let mut transaction = self.journal.begin_read_models().await.map_err(storage)?;
        if let Err(source) = projection.apply(&mut transaction, &[Arc::new(event)]).await {
            let _ = transaction.rollback().await;
            return Ok(Err(source.to_string()));
        }
        DeadLetterTable::remove_in(&mut transaction, &self.name, offset)
            .await
            .map_err(storage)?;
        // On SQLite a statement's error (a constraint, a trigger) shows at the commit.
        Ok(transaction
            .commit()
            .await
            .map_err(|source| Failure::<P::Error>::Commit(source).to_string()))
    }

    /// Commits `transaction` with the offset moved to `last`: only from the offset this feed
    /// read or committed, and only if no holder of a later lease epoch committed. Were
    /// another holder of the same projection (a lease overlapping this one) to have
    /// committed these events, the batch is refused whole rather than counted twice.
    async fn commit<E: std::error::Error + 'static>(
        &self,
        transaction: Transaction,
        last: u64,
    ) -> Result<(), ProjectionError<E>> {
        let committed = self.commit_batch(transaction, last).await;
        committed.map_err(|source| self.commit_error(source))
    }

    /// [`commit`](Self::commit), answering the database's error.
    async fn commit_batch(
        &self,
        mut transaction: Transaction,
        last: u64,
    ) -> Result<(), StorageError> {
        let advance = Advance {
            from: self.offset,
            epoch: self.epoch,
        };
        let partition = PROJECTION_PARTITION;
        OffsetStore::advance_in(&mut transaction, &self.name, partition, advance, last).await?;
        // The read models' writer checks the offset at the commit.
        transaction.commit().await
    }

    fn commit_error<E: std::error::Error + 'static>(
        &self,
        source: StorageError,
    ) -> ProjectionError<E> {
        match source {
            source @ StorageError::OffsetFenced { .. } => ProjectionError::Fenced {
                projection: self.name.clone(),
                source,
            },
            source => storage(&self.name, source),
        }
    }

    fn stats(&self, journal_last_offset: u64) -> ProjectionStats {
        let read_to = self.read_to();
        ProjectionStats {
            offset: self.offset,
            read_to,
            lag: journal_last_offset.saturating_sub(read_to),
            ..self.stats.clone()
        }
    }

    /// Every event at or below it has been read: the offset, or the tail's cursor past it
    /// (events the filter left out).
    fn read_to(&self) -> u64 {
        self.offset.max(self.tail.cursor())
    }
}

fn storage<E: std::error::Error>(projection: &str, source: StorageError) -> ProjectionError<E> {
    ProjectionError::Storage {
        projection: projection.to_owned(),
        source,
    }
}

/// The state of a running [`ProjectionActor`].
pub struct ProjectionState<P> {
    projection: P,
    /// Set once a holder of a later lease epoch committed: this one applies nothing more.
    fenced: bool,
    feed: Feed,
    poll_interval: Duration,
    batch_interval_min: Duration,
    /// Started once the actor runs (it needs the actor's reference).
    waker: Option<TailWaker>,
    progress: Option<Progress>,
    /// The journal's last offset when last asked, for the lag.
    journal_last_offset: u64,
    /// While an event is tried again: no step before this instant.
    backoff_until: Option<tokio::time::Instant>,
    /// When the dead-letter table was last read for retries.
    retries_checked: tokio::time::Instant,
    /// The rebuild asked of this incarnation, and when it began.
    rebuild: Option<(RebuildProgress, tokio::time::Instant)>,
}

impl<P> std::fmt::Debug for ProjectionState<P> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProjectionState")
            .field("name", &self.feed.name)
            .field("offset", &self.feed.offset)
            .finish_non_exhaustive()
    }
}

/// The actor hosting projection `P`. Spawn it with [`ProjectionArgs`], or supervise it with
/// [`ProjectionActor::spec`].
pub struct ProjectionActor<P>(std::marker::PhantomData<fn() -> P>);

impl<P> ProjectionActor<P> {
    /// The actor (its state comes with [`ProjectionArgs`]).
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<P> Default for ProjectionActor<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> std::fmt::Debug for ProjectionActor<P> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ProjectionActor")
    }
}

/// How long a request to a projection (stats, a rebuild's start) waits for its answer.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

impl<P: Projection> ProjectionActor<P> {
    /// How long [`Self::stats`] waits for an answer.
    pub const STATS_TIMEOUT: Duration = STATS_TIMEOUT;

    /// A child spec for a supervisor: each start builds the read model afresh with `make`
    /// and resumes from its stored offset. Progress is recorded after every batch and every
    /// wake-up (at least once per poll interval), so a stall timeout (see
    /// [`ChildSpec::with_stall_timeout`]) longer than the poll interval catches a projection
    /// stuck in a batch.
    /// `epoch`: see [`ProjectionArgs::epoch`].
    pub fn spec<F>(
        name: impl Into<String>,
        journal: Journal,
        config: ProjectionConfig,
        epoch: Option<u64>,
        make: F,
    ) -> ChildSpec
    where
        F: Fn() -> P + Send + Sync + 'static,
    {
        let handle = ProjectionHandle::default();
        Self::spec_with_handle(name, journal, config, epoch, make, handle)
    }

    /// [`Self::spec`], each incarnation reachable through `handle`.
    pub fn spec_with_handle<F>(
        name: impl Into<String>,
        journal: Journal,
        config: ProjectionConfig,
        epoch: Option<u64>,
        make: F,
        handle: ProjectionHandle,
    ) -> ChildSpec
    where
        F: Fn() -> P + Send + Sync + 'static,
    {
        let make = std::sync::Arc::new(make);
        ChildSpec::new(name, "projection", move |context: ChildContext| {
            let arguments = ProjectionArgs {
                projection: make(),
                journal: journal.clone(),
                config: config.clone(),
                progress: Some(context.progress),
                epoch,
            };
            let handle = handle.clone();
            async move {
                let (actor, _join) =
                    Self::spawn_linked(None, Self::new(), arguments, context.supervisor).await?;
                handle.set(actor.clone());
                Ok(actor.get_cell())
            }
        })
    }

    /// Asks `actor` for its progress, waiting at most [`Self::STATS_TIMEOUT`].
    pub async fn stats(actor: &ActorRef<ProjectionMessage>) -> Result<ProjectionStats, Error> {
        crate::runtime::ask::ask(actor, ProjectionMessage::Stats, Self::STATS_TIMEOUT).await
    }
}

impl<P: Projection> Actor for ProjectionActor<P> {
    type Msg = ProjectionMessage;
    type State = ProjectionState<P>;
    type Arguments = ProjectionArgs<P>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: ProjectionArgs<P>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ProjectionArgs {
            projection,
            journal,
            config,
            progress,
            epoch,
        } = arguments;
        let name = projection.name().to_owned();
        if let Err(reason) = config.validate() {
            return Err(Box::new(Error::StartFailed {
                actor: format!("projection {name}"),
                reason: format!("invalid projection config: {reason}"),
            }));
        }
        let (offset, stored_epoch) = OffsetStore::new(journal.read_models().clone())
            .load_with_epoch(&name, PROJECTION_PARTITION)
            .await
            .map_err(|source| storage::<P::Error>(&name, source))?;
        let epoch = epoch.unwrap_or(stored_epoch);
        let mut feed = Feed::new(name, projection.filter(), journal, &config, offset, epoch);
        feed.load_dead_letters()
            .await
            .map_err(|source| storage::<P::Error>(&feed.name, source))?;
        tracing::info!(projection = %feed.name, offset, epoch, dead_letters = feed.stats.dead_letters,
            "projection started");
        Ok(ProjectionState {
            fenced: stored_epoch > epoch,
            projection,
            journal_last_offset: offset,
            feed,
            poll_interval: config.poll_interval,
            batch_interval_min: config.batch_interval_min,
            waker: None,
            progress,
            backoff_until: None,
            retries_checked: tokio::time::Instant::now(),
            rebuild: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.waker = Some(TailWaker::spawn(
            &state.feed.journal,
            myself.clone(),
            state.poll_interval,
            state.batch_interval_min,
            None,
            || ProjectionMessage::Wake,
        ));
        myself.send_message(ProjectionMessage::Poll)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProjectionMessage::Wake | ProjectionMessage::Poll => {
                if let (ProjectionMessage::Wake, Some(waker)) = (&message, &state.waker) {
                    waker.woken(&mut state.feed.tail);
                }
                if !state.fenced {
                    step(&myself, state).await?;
                }
                // A fenced projection stays alive (it is stopped with its lease) and keeps
                // the stall watch quiet.
                if let Some(progress) = &state.progress {
                    progress.record();
                }
            }
            ProjectionMessage::Stats(reply) => {
                match state.feed.journal.last_offset().await {
                    Ok(last) => state.journal_last_offset = last,
                    // Stats are best effort: a failing database shows in the next batch.
                    Err(error) => tracing::debug!(%error, "lag not refreshed"),
                }
                let stats = ProjectionStats {
                    fenced: state.fenced,
                    rebuild: state.rebuild.as_ref().map(|(progress, _)| progress.clone()),
                    ..state.feed.stats(state.journal_last_offset)
                };
                let _ = reply.send(stats);
            }
            ProjectionMessage::Rebuild(reply) => {
                let answer = start_rebuild(state).await;
                if answer.is_ok() {
                    myself.send_message(ProjectionMessage::Poll)?;
                }
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }
}

/// One wake-up of the actor: retries asked for, then the next batch unless it backs off.
async fn step<P: Projection>(
    myself: &ActorRef<ProjectionMessage>,
    state: &mut ProjectionState<P>,
) -> Result<(), ActorProcessingErr> {
    let now = tokio::time::Instant::now();
    if state.feed.stats.dead_letters > 0 && now >= state.retries_checked + state.poll_interval {
        state.retries_checked = now;
        state.feed.retry_parked(&mut state.projection).await?;
    }
    if state.backoff_until.is_some_and(|until| now < until) {
        // A poll is scheduled for the end of the backoff.
        return Ok(());
    }
    state.backoff_until = None;
    match state.feed.step(&mut state.projection).await {
        Ok(Step::Applied(_)) => rebuild_progress(state),
        Ok(Step::Backoff(delay)) => {
            state.backoff_until = Some(now + delay);
            myself.send_after(delay, || ProjectionMessage::Poll);
            return Ok(());
        }
        Err(ProjectionError::Fenced { projection, source }) => {
            metrics::counter!("tradefloor_projection_fenced_total", "projection" => projection.clone())
                .increment(1);
            tracing::warn!(%projection, %source, "projection fenced: another node holds it now; applying nothing more");
            state.fenced = true;
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    }
    if state.feed.tail.has_more() {
        // More is waiting: go on at once, behind whatever is queued.
        myself.send_message(ProjectionMessage::Poll)?;
    }
    Ok(())
}

/// Empties the read model, its offset and its dead letters in one transaction and starts
/// again from offset 0; answers the head it rebuilds up to.
async fn start_rebuild<P: Projection>(state: &mut ProjectionState<P>) -> Result<u64, String> {
    if state.fenced {
        return Err("fenced: another node holds this read model now".to_owned());
    }
    let feed = &mut state.feed;
    let target = feed
        .journal
        .last_offset()
        .await
        .map_err(|e| e.to_string())?;
    let mut transaction = feed
        .journal
        .begin_read_models()
        .await
        .map_err(|e| e.to_string())?;
    if let Err(error) = state.projection.reset(&mut transaction).await {
        let _ = transaction.rollback().await;
        return Err(error.to_string());
    }
    OffsetStore::reset_in(&mut transaction, &feed.name, PROJECTION_PARTITION)
        .await
        .map_err(|e| e.to_string())?;
    DeadLetterTable::clear_in(&mut transaction, &feed.name)
        .await
        .map_err(|e| e.to_string())?;
    transaction.commit().await.map_err(|e| e.to_string())?;
    feed.offset = 0;
    feed.tail.seek(0);
    feed.failing = None;
    feed.held.clear();
    feed.stats.dead_letters = 0;
    state.backoff_until = None;
    let started_at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let progress = RebuildProgress {
        target,
        started_at_unix_ms,
        took_ms: None,
    };
    state.rebuild = Some((progress, tokio::time::Instant::now()));
    tracing::info!(projection = %feed.name, target, "read model reset; rebuilding from offset 0");
    metrics::counter!("tradefloor_projection_rebuilds_total", "projection" => feed.name.clone())
        .increment(1);
    rebuild_progress(state);
    Ok(target)
}

/// Marks a running rebuild done once the log was read up to its target (a filtered read
/// model's offset stops at the last event it applied; the tail's cursor passes the rest).
fn rebuild_progress<P>(state: &mut ProjectionState<P>) {
    let offset = state.feed.read_to();
    if let Some((progress, started)) = &mut state.rebuild
        && progress.took_ms.is_none()
        && offset >= progress.target
    {
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        progress.took_ms = Some(took);
        tracing::info!(projection = %state.feed.name, offset, took_ms = took, "read model rebuilt");
    }
}

/// Rebuilds `projection`'s read model: resets its tables ([`Projection::reset`]) and deletes
/// its offset in one transaction, then replays the log from offset 0 in batches (each batch
/// with its offset, as the actor does). Returns the offset it reached.
///
/// Stop the projection's actor first: one still running would go on from its own offset
/// over the rebuilt tables. A rebuild that fails part way leaves a consistent prefix (tables
/// and offset agree), so starting the actor afterwards finishes it.
pub async fn rebuild<P: Projection>(
    journal: &Journal,
    projection: &mut P,
    config: &ProjectionConfig,
) -> Result<u64, ProjectionError<P::Error>> {
    let name = projection.name().to_owned();
    if let Err(reason) = config.validate() {
        let reason = format!("invalid projection config: {reason}");
        return Err(storage(&name, StorageError::InvalidRequest(reason)));
    }
    DeadLetterTable::new(journal.read_models().clone())
        .create()
        .await
        .map_err(|source| storage(&name, source))?;
    let mut transaction = journal
        .begin_read_models()
        .await
        .map_err(|source| storage(&name, source))?;
    if let Err(source) = projection.reset(&mut transaction).await {
        let _ = transaction.rollback().await;
        return Err(ProjectionError::ReadModel {
            projection: name,
            first: 0,
            last: 0,
            source,
        });
    }
    OffsetStore::reset_in(&mut transaction, &name, PROJECTION_PARTITION)
        .await
        .map_err(|source| storage(&name, source))?;
    DeadLetterTable::clear_in(&mut transaction, &name)
        .await
        .map_err(|source| storage(&name, source))?;
    transaction
        .commit()
        .await
        .map_err(|source| storage(&name, source))?;
    tracing::info!(projection = %name, "projection reset; replaying from offset 0");
    // The offset's row is gone with its epoch: the rebuild starts the count again.
    let mut feed = Feed::new(name, projection.filter(), journal.clone(), config, 0, 0);
    // Until the tail has nothing more: caught up with the database and the bus.
    loop {
        match feed.step(projection).await? {
            Step::Applied(0) if !feed.tail.has_more() => return Ok(feed.offset),
            Step::Applied(_) => {}
            Step::Backoff(delay) => tokio::time::sleep(delay).await,
        }
    }
}
