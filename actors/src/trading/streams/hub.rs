//! The node's stream hub: a supervised actor that follows the log and publishes each
//! event's messages to the topics' channels, and the handle clients subscribe through.
//!
//! Besides the log's messages the hub keeps two conflated states per followed market: the
//! top of the book, folded from the book's events onto a copy of the book (loaded from the
//! journal when the market gets its first follower: exact on every node, wherever the book
//! runs), published when it changes; and the market's latest candles, read from the candles
//! read model every `candle_interval`, published when they change (a candle whose bucket has
//! passed is published once more, `closed`). Followed accounts get the risk monitor's flags
//! the same way, read as they are raised or updated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::broadcast;
use tradefloor_domain::book::OrderBook;
use tradefloor_domain::{AccountId, Aggregate, Symbol};
use tradefloor_persistence::{Filter, Journal, StoredEvent};

use super::message::{
    CandleBody, Interest, StreamMessage, TopBody, concerns_streams, messages_of, offset_of,
};
use super::subscription::Subscription;
use super::{StreamsConfig, Topic};
use crate::error::Error;
use crate::hosting::entity::Persistent;
use crate::hosting::log_tail::{LogTail, TailWaker};
use crate::runtime::registry::Registry;
use crate::runtime::supervisor::{
    ChildContext, ChildSpec, Progress, SupervisionConfig, Supervisor, SupervisorArgs,
    SupervisorMessage,
};
use crate::trading::projections::candles::{Candle, CandleInterval, latest_candles};
use crate::trading::risk::flags_matching;
use crate::trading::state::load_state;

/// The hub's name as a child of its supervisor.
const HUB_NAME: &str = "hub";

/// What the hub and its handles share.
#[derive(Debug)]
struct Shared {
    /// Each topic someone follows, and its channel.
    topics: Mutex<HashMap<Topic, broadcast::Sender<Arc<StreamMessage>>>>,
    /// Subscriptions open.
    subscriptions: AtomicUsize,
    /// The last log offset the hub published.
    cursor: AtomicU64,
    /// Messages published since the node started.
    published: AtomicU64,
}

impl Shared {
    fn topics(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Topic, broadcast::Sender<Arc<StreamMessage>>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a subscription while it lives.
#[derive(Debug)]
pub(super) struct SubscriptionGuard(Arc<Shared>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.subscriptions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the streams of a node are doing, for the actor tree and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Topics with a channel.
    pub topics: usize,
    /// Subscriptions open.
    pub subscriptions: usize,
    /// The last log offset published.
    pub offset: u64,
    /// Messages published since the node started.
    pub published: u64,
}

/// The handle of a node's streams: subscribe here.
#[derive(Clone, Debug)]
pub struct StreamHub {
    shared: Arc<Shared>,
    journal: Journal,
    config: StreamsConfig,
}

impl StreamHub {
    /// Streams of `journal`'s log; nothing is published until the actor of
    /// [`StreamHub::spec`] runs.
    pub fn new(journal: Journal, config: StreamsConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                topics: Mutex::new(HashMap::new()),
                subscriptions: AtomicUsize::new(0),
                cursor: AtomicU64::new(0),
                published: AtomicU64::new(0),
            }),
            journal,
            config,
        }
    }

    /// The hub's actor, for a supervisor: each start follows the log from its head.
    pub fn spec(&self) -> ChildSpec {
        let hub = self.clone();
        ChildSpec::new(HUB_NAME, "stream-hub", move |context: ChildContext| {
            let hub = hub.clone();
            async move {
                let (actor, _join) = Actor::spawn_linked(
                    None,
                    HubActor,
                    (hub, Some(context.progress)),
                    context.supervisor,
                )
                .await?;
                Ok(actor.get_cell())
            }
        })
    }

    /// Follows `topic`: live from now, or, with `after`, from the message after that id
    /// (read from the journal first, up to the log's head now).
    ///
    /// # Errors
    ///
    /// [`Error::Overloaded`] when the node has `subscriptions_max` open;
    /// [`Error::ResumeTooOld`] when `after` is further behind the log's head than
    /// `resume_events_max`; [`Error::Persistence`] if the head cannot be read.
    pub async fn subscribe(&self, topic: Topic, after: Option<u64>) -> Result<Subscription, Error> {
        let open = self.shared.subscriptions.fetch_add(1, Ordering::AcqRel);
        let guard = SubscriptionGuard(self.shared.clone());
        if open >= self.config.subscriptions_max {
            return Err(Error::Overloaded {
                actor: "streams".to_owned(),
                capacity: self.config.subscriptions_max,
            });
        }
        // Subscribed before the head is read: every event after the head is published
        // after this, so it reaches the receiver; the journal has everything up to it.
        let receiver = self
            .shared
            .topics()
            .entry(topic)
            .or_insert_with(|| broadcast::channel(self.config.topic_buffer_messages).0)
            .subscribe();
        let resume = match after {
            None => None,
            Some(after) => {
                let head =
                    self.journal
                        .last_offset()
                        .await
                        .map_err(|error| Error::Persistence {
                            actor: "streams".to_owned(),
                            reason: error.to_string(),
                        })?;
                if head.saturating_sub(offset_of(after)) > self.config.resume_events_max {
                    return Err(Error::ResumeTooOld {
                        after,
                        head,
                        behind_max: self.config.resume_events_max,
                    });
                }
                Some((after, head))
            }
        };
        Ok(Subscription::new(
            topic,
            self.journal.clone(),
            receiver,
            resume,
            guard,
        ))
    }

    /// Starts the hub's actor under a supervisor of its own at `path` (registered in
    /// `registry`); the supervisor restarts it if it fails.
    pub(crate) async fn start(
        &self,
        registry: Registry,
        path: String,
    ) -> Result<ActorRef<SupervisorMessage>, Error> {
        let arguments = SupervisorArgs::new(
            path.clone(),
            SupervisionConfig::default(),
            vec![self.spec()],
        )
        .with_registry(registry);
        let (supervisor, _join) =
            Actor::spawn(None, Supervisor, arguments)
                .await
                .map_err(|error| Error::StartFailed {
                    actor: path,
                    reason: error.to_string(),
                })?;
        Ok(supervisor)
    }

    /// How the streams are doing.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            topics: self.shared.topics().len(),
            subscriptions: self.shared.subscriptions.load(Ordering::Acquire),
            offset: self.shared.cursor.load(Ordering::Acquire),
            published: self.shared.published.load(Ordering::Acquire),
        }
    }
}

/// What the hub actor answers to.
#[derive(Debug)]
pub(super) enum HubMessage {
    /// The log bus has a batch, or the poll interval passed.
    Wake,
    /// The last batch was cut short: take the next one.
    Poll,
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for HubMessage {}

/// A followed market's book, folded from its events.
struct TrackedBook {
    book: OrderBook,
    /// Its stream's sequence the fold has reached.
    sequence: u64,
    /// The top last published.
    top: Option<TopBody>,
}

/// The state of a running hub.
pub(super) struct HubState {
    hub: StreamHub,
    tail: LogTail,
    waker: Option<TailWaker>,
    progress: Option<Progress>,
    books: BTreeMap<Symbol, TrackedBook>,
    /// The latest candle published per followed market and interval.
    candles: BTreeMap<(Symbol, CandleInterval), Candle>,
    /// The latest breach among the risk flags published.
    flags_after: u64,
    state_read_at: Instant,
}

/// The hub's actor.
#[derive(Debug, Default)]
pub(super) struct HubActor;

impl HubState {
    fn storage(error: impl std::fmt::Display) -> Error {
        Error::Persistence {
            actor: "streams/hub".to_owned(),
            reason: error.to_string(),
        }
    }

    /// Every topic someone follows.
    fn interest(&self) -> Interest {
        let topics = self.hub.shared.topics();
        Interest::of(
            topics
                .iter()
                .filter(|(_, sender)| sender.receiver_count() > 0)
                .map(|(topic, _)| *topic),
        )
    }

    /// The accounts someone follows.
    fn followed_accounts(&self) -> BTreeSet<AccountId> {
        let topics = self.hub.shared.topics();
        topics
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .filter_map(|(topic, _)| match topic {
                Topic::Account(account) => Some(*account),
                Topic::Market(_) => None,
            })
            .collect()
    }

    /// The markets someone follows.
    fn followed_markets(&self) -> BTreeSet<Symbol> {
        let mut topics = self.hub.shared.topics();
        // Channels nobody reads any more go: a topic costs nothing once unfollowed.
        topics.retain(|_, sender| sender.receiver_count() > 0);
        topics
            .keys()
            .filter_map(|topic| match topic {
                Topic::Market(symbol) => Some(*symbol),
                Topic::Account(_) => None,
            })
            .collect()
    }

    fn publish(&self, messages: Vec<Arc<StreamMessage>>) {
        if messages.is_empty() {
            return;
        }
        let topics = self.hub.shared.topics();
        let mut sent = 0;
        for message in messages {
            if let Some(sender) = topics.get(&message.topic) {
                // No receiver left: nothing to do (the channel goes at the next check).
                if sender.send(message).is_ok() {
                    sent += 1;
                }
            }
        }
        self.hub.shared.published.fetch_add(sent, Ordering::AcqRel);
    }

    /// Takes the log's next batch and publishes what it says.
    async fn step(&mut self) -> Result<usize, Error> {
        let events = self.tail.next().await.map_err(Self::storage)?;
        let followed = self.followed_markets();
        self.books.retain(|symbol, _| followed.contains(symbol));
        let interest = self.interest();
        let mut messages = Vec::new();
        let mut touched = BTreeSet::new();
        for stored in &events {
            if interest.is_empty() || !concerns_streams(stored) {
                continue;
            }
            messages_of(stored, &interest, &mut messages).map_err(Self::storage)?;
            if let Some(symbol) = self.followed_book(stored, &followed).await? {
                touched.insert(symbol);
            }
        }
        for symbol in touched {
            if let Some(top) = self.changed_top(symbol) {
                messages.push(Arc::new(StreamMessage::new(
                    None,
                    Topic::Market(symbol),
                    "top",
                    &top,
                )));
            }
        }
        self.publish(messages);
        self.hub
            .shared
            .cursor
            .store(self.tail.cursor(), Ordering::Release);
        Ok(events.len())
    }

    /// Folds `stored` onto the copy of its book if its market is followed (loading the book
    /// first if it is not held yet); its symbol if so.
    async fn followed_book(
        &mut self,
        stored: &StoredEvent,
        followed: &BTreeSet<Symbol>,
    ) -> Result<Option<Symbol>, Error> {
        if stored.kind != <OrderBook as Aggregate>::KIND {
            return Ok(None);
        }
        let Some(symbol) = stored
            .stream
            .split_once('|')
            .and_then(|(_, id)| Symbol::new(id).ok())
            .filter(|symbol| followed.contains(symbol))
        else {
            return Ok(None);
        };
        if !self.books.contains_key(&symbol) {
            // Read up to the stream's head now: events of this batch and later ones at or
            // below it are in the copy already and are skipped by sequence.
            let (book, sequence) =
                load_state::<OrderBook>(&self.hub.journal, symbol.as_str()).await?;
            let top = None;
            self.books.insert(
                symbol,
                TrackedBook {
                    book,
                    sequence,
                    top,
                },
            );
        }
        let tracked = self.books.get_mut(&symbol).expect("inserted above");
        if stored.sequence > tracked.sequence {
            let event = <OrderBook as Persistent>::codec()
                .decode_shared(stored)
                .map_err(Self::storage)?;
            tracked.book.apply(&event);
            tracked.sequence = stored.sequence;
        }
        Ok(Some(symbol))
    }

    /// The top of `symbol`'s book if it changed since last published.
    fn changed_top(&mut self, symbol: Symbol) -> Option<TopBody> {
        let tracked = self.books.get_mut(&symbol)?;
        let top = TopBody::of(symbol, &tracked.book.depth(1));
        if tracked.top.as_ref() == Some(&top) {
            return None;
        }
        tracked.top = Some(top.clone());
        Some(top)
    }

    /// Every `candle_interval`: publishes the candles of followed markets and the risk flags
    /// of followed accounts that changed since last read.
    async fn read_state(&mut self) -> Result<(), Error> {
        if self.state_read_at.elapsed() < self.hub.config.candle_interval {
            return Ok(());
        }
        self.state_read_at = Instant::now();
        self.read_candles().await?;
        self.read_flags().await
    }

    /// Publishes the flags raised or updated since the last read, to their accounts' topics.
    async fn read_flags(&mut self) -> Result<(), Error> {
        let followed = self.followed_accounts();
        if followed.is_empty() {
            return Ok(());
        }
        let flags = flags_matching(self.hub.journal.read_models(), None, self.flags_after)
            .await
            .map_err(Self::storage)?;
        let mut messages = Vec::new();
        for flag in flags {
            self.flags_after = self.flags_after.max(flag.last_offset);
            let Ok(account) = AccountId::new(&flag.account_id) else {
                continue;
            };
            if followed.contains(&account) {
                let topic = Topic::Account(account);
                messages.push(Arc::new(StreamMessage::new(None, topic, "risk", &flag)));
            }
        }
        self.publish(messages);
        Ok(())
    }

    /// Publishes the candles of followed markets that changed since last read.
    async fn read_candles(&mut self) -> Result<(), Error> {
        let followed = self.followed_markets();
        self.candles
            .retain(|(symbol, _), _| followed.contains(symbol));
        let mut messages = Vec::new();
        for symbol in followed {
            for interval in CandleInterval::ALL {
                let latest = latest_candles(&self.hub.journal, symbol, interval, 2)
                    .await
                    .map_err(Self::storage)?;
                self.candle_messages(symbol, interval, &latest, &mut messages);
            }
        }
        self.publish(messages);
        Ok(())
    }

    /// `latest` (newest first) against what was published: the previous bucket's final
    /// value once a newer bucket appears, then the newest if it changed.
    fn candle_messages(
        &mut self,
        symbol: Symbol,
        interval: CandleInterval,
        latest: &[Candle],
        messages: &mut Vec<Arc<StreamMessage>>,
    ) {
        let Some(newest) = latest.first() else {
            return;
        };
        let key = (symbol, interval);
        let previous = self.candles.get(&key).copied();
        if previous.as_ref() == Some(newest) {
            return;
        }
        let mut push = |candle: &Candle, closed: bool| {
            let body = CandleBody::new(&symbol, interval, candle, closed);
            messages.push(Arc::new(StreamMessage::new(
                None,
                Topic::Market(symbol),
                "candle",
                &body,
            )));
        };
        if let Some(previous) = previous
            && previous.start < newest.start
            && let Some(closed) = latest.iter().find(|candle| candle.start == previous.start)
        {
            push(closed, true);
        }
        push(newest, false);
        self.candles.insert(key, *newest);
    }
}

impl Actor for HubActor {
    type Msg = HubMessage;
    type State = HubState;
    type Arguments = (StreamHub, Option<Progress>);

    async fn pre_start(
        &self,
        _myself: ActorRef<HubMessage>,
        (hub, progress): (StreamHub, Option<Progress>),
    ) -> Result<HubState, ActorProcessingErr> {
        hub.config.validate().map_err(|reason| Error::StartFailed {
            actor: "streams/hub".to_owned(),
            reason,
        })?;
        // Live from the head at the first start (a subscriber that wants more reads the
        // journal itself); after a restart, from what was published, so no live subscriber
        // misses what the hub's failure interrupted.
        let head = match hub.shared.cursor.load(Ordering::Acquire) {
            0 => hub.journal.last_offset().await?,
            published => published,
        };
        hub.shared.cursor.store(head, Ordering::Release);
        let tail = LogTail::new(
            hub.journal.clone(),
            Filter::All,
            head,
            hub.config.batch_events_max,
        );
        Ok(HubState {
            hub,
            tail,
            waker: None,
            progress,
            books: BTreeMap::new(),
            candles: BTreeMap::new(),
            flags_after: 0,
            state_read_at: Instant::now(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<HubMessage>,
        state: &mut HubState,
    ) -> Result<(), ActorProcessingErr> {
        state.waker = Some(TailWaker::spawn(
            &state.hub.journal,
            myself.clone(),
            state.hub.config.poll_interval,
            std::time::Duration::ZERO,
            None,
            || HubMessage::Wake,
        ));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<HubMessage>,
        message: HubMessage,
        state: &mut HubState,
    ) -> Result<(), ActorProcessingErr> {
        if let (HubMessage::Wake, Some(waker)) = (&message, &state.waker) {
            waker.woken(&mut state.tail);
        }
        state.step().await?;
        state.read_state().await?;
        if let Some(progress) = &state.progress {
            progress.record();
        }
        if state.tail.has_more() {
            myself.send_message(HubMessage::Poll)?;
        }
        Ok(())
    }
}
