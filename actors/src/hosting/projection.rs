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
//! - **Failures fail the actor.** Any error fails the actor, so its [`Supervisor`] restarts it
//!   (with backoff, within its restart intensity); the actor never retries in place.
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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tradefloor_persistence::{
    Advance, Error as StorageError, Filter, Journal, OffsetStore, StoredEvent, Transaction,
};

use crate::error::Error;
use crate::hosting::log_tail::{BATCH_INTERVAL_MIN_DEFAULT, LogTail, TailWaker};
use crate::runtime::supervisor::{ChildContext, ChildSpec, Progress};

/// The offset-store partition a projection commits under: a projection reads the whole
/// (filtered) log as one partition.
pub const PROJECTION_PARTITION: u32 = 0;

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
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            batch_events_max: 512,
            poll_interval: Duration::from_millis(100),
            batch_interval_min: BATCH_INTERVAL_MIN_DEFAULT,
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
    /// The journal's last offset minus [`offset`](Self::offset). With a filter, events after
    /// the last matching one count too, so a filtered projection can show a lag it has no
    /// events to close.
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
}

/// What a [`ProjectionActor`] answers to.
#[derive(Debug)]
pub enum ProjectionMessage {
    /// Report progress.
    Stats(RpcReplyPort<ProjectionStats>),
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
    /// The last offset applied and committed.
    offset: u64,
    /// The lease epoch its commits are fenced by.
    epoch: u64,
    stats: ProjectionStats,
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
        }
    }

    /// Applies the next batch the tail has, with its offset in one transaction; returns how
    /// many events it applied (0 if the tail had none).
    async fn step<P: Projection>(
        &mut self,
        projection: &mut P,
    ) -> Result<usize, ProjectionError<P::Error>> {
        let events = self.tail.next().await;
        self.stats.polls = self.tail.database_reads();
        let events = events.map_err(|source| storage(&self.name, source))?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(0);
        };
        let (first, last) = (first.global_offset, last.global_offset);
        assert!(
            first > self.offset,
            "the tail yields offsets after the cursor"
        );
        assert!(last >= first, "the tail yields offsets in order");
        // On SQLite this queues behind this process's other writers rather than poll for the
        // database's write lock, and runs on the read models' own write connection.
        let storage = |source| storage(&self.name, source);
        let mut transaction = self.journal.begin_read_models().await.map_err(storage)?;
        if let Err(source) = projection.apply(&mut transaction, &events).await {
            // Dropping the transaction would roll it back too; saying so is clearer.
            let _ = transaction.rollback().await;
            return Err(ProjectionError::ReadModel {
                projection: self.name.clone(),
                first,
                last,
                source,
            });
        }
        self.commit(transaction, last).await?;
        self.offset = last;
        self.stats.last_batch = events.len();
        self.stats.batches += 1;
        self.stats.events += events.len() as u64;
        Ok(events.len())
    }

    /// Commits `transaction` with the offset moved to `last`: only from the offset this feed
    /// read or committed, and only if no holder of a later lease epoch committed. Were
    /// another holder of the same projection (a lease overlapping this one) to have
    /// committed these events, the batch is refused whole rather than counted twice.
    async fn commit<E: std::error::Error + 'static>(
        &self,
        mut transaction: Transaction,
        last: u64,
    ) -> Result<(), ProjectionError<E>> {
        let advance = Advance {
            from: self.offset,
            epoch: self.epoch,
        };
        let partition = PROJECTION_PARTITION;
        let committed =
            match OffsetStore::advance_in(&mut transaction, &self.name, partition, advance, last)
                .await
            {
                // The read models' writer checks the offset at the commit.
                Ok(()) => transaction.commit().await,
                Err(error) => Err(error),
            };
        match committed {
            Ok(()) => Ok(()),
            Err(source @ StorageError::OffsetFenced { .. }) => Err(ProjectionError::Fenced {
                projection: self.name.clone(),
                source,
            }),
            Err(source) => Err(storage(&self.name, source)),
        }
    }

    fn stats(&self, journal_last_offset: u64) -> ProjectionStats {
        ProjectionStats {
            offset: self.offset,
            lag: journal_last_offset.saturating_sub(self.offset),
            ..self.stats.clone()
        }
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

impl<P: Projection> ProjectionActor<P> {
    /// How long [`Self::stats`] waits for an answer.
    pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);

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
        let make = std::sync::Arc::new(make);
        ChildSpec::new(name, "projection", move |context: ChildContext| {
            let arguments = ProjectionArgs {
                projection: make(),
                journal: journal.clone(),
                config: config.clone(),
                progress: Some(context.progress),
                epoch,
            };
            async move {
                let (actor, _join) =
                    Self::spawn_linked(None, Self::new(), arguments, context.supervisor).await?;
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
        let feed = Feed::new(name, projection.filter(), journal, &config, offset, epoch);
        tracing::info!(projection = %feed.name, offset, epoch, "projection started");
        Ok(ProjectionState {
            fenced: stored_epoch > epoch,
            projection,
            journal_last_offset: offset,
            feed,
            poll_interval: config.poll_interval,
            batch_interval_min: config.batch_interval_min,
            waker: None,
            progress,
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
                    match state.feed.step(&mut state.projection).await {
                        Ok(_) => {}
                        Err(ProjectionError::Fenced { projection, source }) => {
                            metrics::counter!("tradefloor_projection_fenced_total", "projection" => projection.clone())
                                .increment(1);
                            tracing::warn!(%projection, %source, "projection fenced: another node holds it now; applying nothing more");
                            state.fenced = true;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                // A fenced projection stays alive (it is stopped with its lease) and keeps
                // the stall watch quiet.
                if let Some(progress) = &state.progress {
                    progress.record();
                }
                if !state.fenced && state.feed.tail.has_more() {
                    // More is waiting: go on at once, behind whatever is queued.
                    myself.send_message(ProjectionMessage::Poll)?;
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
                    ..state.feed.stats(state.journal_last_offset)
                };
                let _ = reply.send(stats);
            }
        }
        Ok(())
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
    transaction
        .commit()
        .await
        .map_err(|source| storage(&name, source))?;
    tracing::info!(projection = %name, "projection reset; replaying from offset 0");
    // The offset's row is gone with its epoch: the rebuild starts the count again.
    let mut feed = Feed::new(name, projection.filter(), journal.clone(), config, 0, 0);
    // Until the tail has nothing more: caught up with the database and the bus.
    while feed.step(projection).await? > 0 || feed.tail.has_more() {}
    Ok(feed.offset)
}
