//! The book feed: the durable path from the order books' events to the order sagas.
//!
//! A maker's fills happen inside another order's submit, so only the book's journal knows
//! of them for sure: if the node dies right after the book persisted a trade, the maker's
//! saga must still learn of it, or the trade never settles on the maker's side. The feed is a
//! consumer of the global log (`Filter::Kind("order_book")`) with its offset in the
//! [`OffsetStore`], following the log with a [`LogTail`]: it takes a batch, delivers each event to the sagas it concerns
//! ([`SagaInput::Book`], awaiting [`SagaHost::send`], so the saga has persisted what it made
//! of it), and only then commits the batch's offset. Delivery is therefore at least once
//! (a crash between delivery and commit repeats the batch), and sagas deduplicate.
//!
//! Within a batch, the events of one saga are delivered in log order; different sagas are
//! served concurrently. A delivery that keeps failing (e.g. the saga region is stopped)
//! fails the actor without committing; its supervisor restarts it and the batch comes again.
//! The dispatcher hands the same events to the sagas directly, right after the book's
//! command, so the feed is the safety net rather than the fast path. It is woken when the
//! journal publishes a batch on the log bus (batches published while it delivers are taken
//! together, up to `batch_events_max`), and reads the database to catch up, after the poll
//! interval without a batch, and when nudged (the dispatcher nudges it when a book command
//! got no answer: the book may be on another node, whose appends no bus here carries).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tradefloor_domain::Aggregate;
use tradefloor_domain::book::OrderBook;
use tradefloor_domain::saga::{OrderSaga, SagaInput};
use tradefloor_persistence::{Filter, Journal, OffsetStore, StoredEvent};

use crate::error::Error;
use crate::hosting::entity::Persistent;
use crate::hosting::log_tail::{LogTail, TailWaker};
use crate::hosting::saga_host::SagaHost;
use crate::runtime::supervisor::{ChildContext, ChildSpec, Progress};

/// The feed's name as a service (and its child's name under its supervisor).
pub const SERVICE_NAME: &str = "book-feed";

/// The feed's key in the offset store.
pub const FEED_NAME: &str = "trading.book_feed";
/// How often one saga input is tried before the batch fails.
const DELIVERY_ATTEMPTS_MAX: u32 = 5;
/// The pause before the next attempt, times the attempt number.
const DELIVERY_RETRY_STEP: Duration = Duration::from_millis(20);

/// How the feed reads the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// Most book events read and delivered per batch (one offset commit per batch).
    pub batch_events_max: usize,
    /// The longest a caught-up feed waits for a batch on the log bus before it reads the
    /// database anyway.
    pub poll_interval: Duration,
    /// The shortest time between two wake-ups by the log bus: batches published meanwhile are
    /// taken together, so a busy log makes fewer, larger transactions (each a turn at SQLite's
    /// write lock and an fsync) at the cost of trailing the log by up to this much.
    pub batch_interval_min: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            batch_events_max: 512,
            poll_interval: Duration::from_millis(50),
            batch_interval_min: crate::hosting::log_tail::BATCH_INTERVAL_MIN_DEFAULT,
        }
    }
}

/// What the feed has done, for the actor tree and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FeedStats {
    /// The last offset delivered and committed.
    pub offset: u64,
    /// Book events delivered by this incarnation.
    pub events: u64,
    /// Saga inputs delivered by this incarnation.
    pub deliveries: u64,
}

/// What the feed actor answers to.
#[derive(Debug)]
pub enum FeedMessage {
    /// Report progress.
    Stats(RpcReplyPort<FeedStats>),
    /// Internal: deliver the next batch, if any.
    #[doc(hidden)]
    Poll,
    /// Internal: the log bus has a batch, the poll interval passed without one, or the feed
    /// was nudged.
    #[doc(hidden)]
    Wake,
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for FeedMessage {}

/// What the feed is started with.
pub struct FeedArgs {
    /// The sagas' host.
    pub host: SagaHost<OrderSaga>,
    /// The journal it reads and whose database holds its offset.
    pub journal: Journal,
    /// Batch size and poll interval.
    pub config: FeedConfig,
    /// Notified when a book may have written events: the feed reads the database.
    pub wake: Arc<Notify>,
    /// Recorded after every batch and wake-up, for a supervisor's stall watch.
    pub progress: Option<Progress>,
}

/// The state of a running feed.
pub struct FeedState {
    host: SagaHost<OrderSaga>,
    journal: Journal,
    config: FeedConfig,
    wake: Arc<Notify>,
    progress: Option<Progress>,
    tail: LogTail,
    stats: FeedStats,
    /// Started once the actor runs (it needs the actor's reference); stops with the state.
    waker: Option<TailWaker>,
}

/// The feed actor.
#[derive(Debug, Default)]
pub struct BookFeed;

impl BookFeed {
    /// A child spec for a supervisor; each start resumes from the committed offset.
    pub fn spec(
        host: SagaHost<OrderSaga>,
        journal: Journal,
        config: FeedConfig,
        wake: Arc<Notify>,
    ) -> ChildSpec {
        ChildSpec::new(SERVICE_NAME, "feed", move |context: ChildContext| {
            let arguments = FeedArgs {
                host: host.clone(),
                journal: journal.clone(),
                config: config.clone(),
                wake: wake.clone(),
                progress: Some(context.progress),
            };
            async move {
                let (actor, _join) =
                    Self::spawn_linked(None, BookFeed, arguments, context.supervisor).await?;
                Ok(actor.get_cell())
            }
        })
    }
}

/// Delivers one saga's inputs in order, retrying transient failures.
async fn deliver(
    host: SagaHost<OrderSaga>,
    saga_id: String,
    inputs: Vec<SagaInput>,
) -> Result<usize, Error> {
    for input in &inputs {
        let mut attempt = 0;
        loop {
            match host.send(&saga_id, input.clone()).await {
                Ok(_) => break,
                // The saga refuses the input (e.g. it never started): nothing to deliver.
                Err(Error::Rejected(reason)) => {
                    tracing::warn!(saga = %saga_id, %reason, "book event refused by its saga");
                    break;
                }
                Err(error) if attempt + 1 < DELIVERY_ATTEMPTS_MAX => {
                    attempt += 1;
                    tracing::debug!(saga = %saga_id, %error, attempt, "book event not delivered");
                    tokio::time::sleep(DELIVERY_RETRY_STEP * attempt).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(inputs.len())
}

impl FeedState {
    /// Records that the feed delivered everything up to `offset` (on SQLite, on the read
    /// models' writer, behind this process's other writers). Forward only: a delivery
    /// repeated by an overlapping feed changes nothing (sagas take each book event once).
    async fn commit(&self, offset: u64) -> Result<(), tradefloor_persistence::Error> {
        let mut transaction = self.journal.begin_read_models().await?;
        OffsetStore::commit_in(&mut transaction, FEED_NAME, 0, offset).await?;
        transaction.commit().await
    }

    fn storage(&self, error: impl std::fmt::Display) -> Error {
        Error::Persistence {
            actor: FEED_NAME.to_owned(),
            reason: error.to_string(),
        }
    }

    /// Takes the tail's next batch, delivers and commits it; returns its size.
    async fn step(&mut self) -> Result<usize, Error> {
        let events: Vec<Arc<StoredEvent>> = self
            .tail
            .next()
            .await
            .map_err(|error| self.storage(error))?;
        let Some(last) = events.last().map(|event| event.global_offset) else {
            return Ok(0);
        };
        let codec = <OrderBook as Persistent>::codec();
        let mut by_saga: BTreeMap<u64, Vec<SagaInput>> = BTreeMap::new();
        for stored in &events {
            let event = codec
                .decode_shared(stored)
                .map_err(|error| self.storage(error))?;
            for (order_id, input) in SagaInput::from_book(&event) {
                by_saga.entry(order_id.0).or_default().push(input);
            }
        }
        let mut deliveries = JoinSet::new();
        for (order_id, inputs) in by_saga {
            deliveries.spawn(deliver(self.host.clone(), order_id.to_string(), inputs));
        }
        let mut delivered = 0;
        let mut failure = None;
        while let Some(outcome) = deliveries.join_next().await {
            match outcome {
                Ok(Ok(count)) => delivered += count,
                Ok(Err(error)) => failure = Some(error),
                Err(error) => failure = Some(self.storage(error)),
            }
        }
        if let Some(error) = failure {
            // Not committed: the whole batch comes again; sagas deduplicate.
            return Err(error);
        }
        self.commit(last)
            .await
            .map_err(|error| self.storage(error))?;
        self.stats.offset = last;
        self.stats.events += events.len() as u64;
        self.stats.deliveries += delivered as u64;
        Ok(events.len())
    }
}

impl Actor for BookFeed {
    type Msg = FeedMessage;
    type State = FeedState;
    type Arguments = FeedArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<FeedMessage>,
        arguments: FeedArgs,
    ) -> Result<FeedState, ActorProcessingErr> {
        let offset = OffsetStore::new(arguments.journal.read_models().clone())
            .load(FEED_NAME, 0)
            .await?;
        let filter = Filter::Kind(<OrderBook as Aggregate>::KIND.to_owned());
        let batch = arguments.config.batch_events_max;
        if batch == 0 {
            return Err(Box::new(Error::StartFailed {
                actor: FEED_NAME.to_owned(),
                reason: "batch_events_max is zero: no event could ever be delivered".to_owned(),
            }));
        }
        Ok(FeedState {
            tail: LogTail::new(arguments.journal.clone(), filter, offset, batch),
            host: arguments.host,
            journal: arguments.journal,
            config: arguments.config,
            wake: arguments.wake,
            progress: arguments.progress,
            stats: FeedStats {
                offset,
                ..FeedStats::default()
            },
            waker: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<FeedMessage>,
        state: &mut FeedState,
    ) -> Result<(), ActorProcessingErr> {
        state.waker = Some(TailWaker::spawn(
            &state.journal,
            myself.clone(),
            state.config.poll_interval,
            state.config.batch_interval_min,
            Some(state.wake.clone()),
            || FeedMessage::Wake,
        ));
        myself.send_message(FeedMessage::Poll)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<FeedMessage>,
        message: FeedMessage,
        state: &mut FeedState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            FeedMessage::Wake | FeedMessage::Poll => {
                if let (FeedMessage::Wake, Some(waker)) = (&message, &state.waker) {
                    waker.woken(&mut state.tail);
                }
                state.step().await?;
                if let Some(progress) = &state.progress {
                    progress.record();
                }
                if state.tail.has_more() {
                    // More is waiting: go on at once, behind whatever is queued.
                    myself.send_message(FeedMessage::Poll)?;
                }
            }
            FeedMessage::Stats(reply) => {
                let _ = reply.send(state.stats.clone());
            }
        }
        Ok(())
    }
}
