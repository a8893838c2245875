//! Persistent entities: a `domain` aggregate hosted as a virtual actor.
//!
//! An entity is not a ractor actor of its own (a million of those would not fit): it is a
//! [`Cell`] inside its shard's actor, with its own bounded two-lane queue, processed one
//! command at a time. While its events are being written the entity takes no other command
//! (later ones wait in its queue), so every entity is sequential; many entities of a shard
//! write at once, which is what lets the journal batch them.
//!
//! A busy entity (one that many callers use at once, such as a market's order book) would
//! otherwise be limited to one command per journal commit. So when it is ready it takes the
//! commands waiting in its queue as one batch (up to
//! [`EntityConfig::batch_commands_max`](crate::EntityConfig)): it decides them one after the
//! other, each against the state the previous ones left, and writes all their events in one
//! append (one atomic write), then answers each command in order.
//!
//! Guarantees (each tested):
//! - a reply is sent only after the command's events are durable (decide, apply, persist, then
//!   reply); the answers of a batch, refusals included, wait for the batch's write, since they
//!   were decided against state that is durable only then;
//! - a refused command changes nothing;
//! - if the journal refuses or fails a write, the state in memory is thrown away, every
//!   command of the batch gets the error, and the entity recovers from its journal before its
//!   next command;
//! - recovery is the latest snapshot plus the journal tail.
//! - every append and every recovery goes through the region's journal breaker; while it is
//!   open a command fails fast with `BreakerOpen` and nothing is written; the entity, whose
//!   state in memory holds the refused batch, is dropped from memory (no read) and its next
//!   command recovers it from the journal, as it was.

use std::collections::VecDeque;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::info;
use tradefloor_domain::account::{Account, AccountCommand, AccountEvent};
use tradefloor_domain::book::{BookEvent, OrderBook};
use tradefloor_domain::saga::{OrderSaga, SagaEvent, SagaInput};
use tradefloor_domain::{Aggregate, Error as DomainError, Message, OrderId, Priority};
use tradefloor_persistence::{
    Error as JournalError, EventCodec, Filter, Journal, NewEvent, SnapshotStore, StoredEvent, codec,
};

use crate::error::Error;
use crate::hosting::{log_fold, upcasters};
use crate::runtime::dead_letters::{DeadLetter, DeadLetters};

/// An aggregate the runtime can host as a persistent entity.
pub trait Persistent:
    Aggregate<
        Command: Send + Sync + 'static,
        Event: Send + Sync + 'static,
        Reply: Serialize + DeserializeOwned + Send + 'static,
    > + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Tags stored with an event, for filtered reads of the global log.
    fn tags(_event: &Self::Event) -> Vec<String> {
        Vec::new()
    }

    /// The event's valid time (microseconds since the epoch), when it is not the time the
    /// journal records it at (bitemporal corrections).
    fn effective_at(_event: &Self::Event) -> Option<i64> {
        None
    }

    /// Version of the state's serialized shape in snapshots: bump it when that shape changes.
    /// A snapshot of another version is not read: the stream is replayed whole (the journal
    /// is the truth) and the next snapshot saved has the current shape.
    const SNAPSHOT_VERSION: u16 = 1;

    /// The event codec: current schema version, names, and upcasters of older versions.
    fn codec() -> EventCodec<Self::Event> {
        EventCodec::new(
            <Self::Event as Message>::SCHEMA_VERSION,
            <Self::Event as Message>::name,
            <Self::Event as Message>::NAMES,
        )
    }

    /// The tag indexing the events of `command` in the journal, for a command whose id must
    /// be recognised at any age, beyond what the state remembers (`None`: the state's memory
    /// is enough). The host tags the command's events with it and, before deciding such a
    /// command that the state does not recognise as a repeat, looks the tag up: a command
    /// found there is a retry, answered as it was the first time (see [`first_answer`]).
    fn command_tag(_entity_id: &str, _command: &Self::Command) -> Option<String> {
        None
    }

    /// Whether the state still remembers every command id it ever applied, so that a
    /// command with a [`Persistent::command_tag`] it does not recognise is certainly new and
    /// needs no lookup.
    fn remembers_every_command(&self) -> bool {
        false
    }

    /// Whether `event`, decided by a command against this state, must be written. An entity
    /// that folds other streams' events (a saga) may skip the events that only record them:
    /// its host keeps them in memory and writes them before the next event that must be
    /// written, so the entity's own stream is always an exact prefix of its life, and
    /// recovery derives the rest again from the events tagged [`Persistent::related_tag`].
    fn must_journal(&self, _event: &Self::Event) -> bool {
        true
    }

    /// Whether a later command may still write an event. Once not, the events skipped so far
    /// are never needed before another, and the host drops them from memory.
    fn may_write_later(&self) -> bool {
        true
    }

    /// The tag other streams' events about entity `entity_id` carry, for an entity that
    /// folds them ([`Persistent::related_inputs`]); `None` for one that does not.
    fn related_tag(_entity_id: &str) -> Option<String> {
        None
    }

    /// What an event of another stream is to entities of this kind: `(entity id, command)`
    /// pairs, decided at recovery after the entity's own events. Commands must be idempotent
    /// (a fact already folded decides nothing), as the answers they stand for are.
    fn related_inputs(_stored: &StoredEvent) -> Vec<(String, Self::Command)> {
        Vec::new()
    }

    /// Whether related `command` shows that a fold of the log from the middle missed an
    /// earlier related fact, so the entity must be folded again from the journal.
    fn misses_an_earlier_fact(&self, _command: &Self::Command) -> bool {
        false
    }
}

impl Persistent for Account {
    /// 2: the state counts its order rate, and its limits have one.
    const SNAPSHOT_VERSION: u16 = 2;

    fn codec() -> EventCodec<AccountEvent> {
        EventCodec::new(
            AccountEvent::SCHEMA_VERSION,
            AccountEvent::name,
            AccountEvent::NAMES,
        )
        .with_upcasters(&upcasters::ACCOUNT_OLD)
    }

    /// Deposits, withdrawals and limits: what clients retry. Holds and settlements stay
    /// recognisable through the holds themselves (see the account's `is_repeat`).
    fn command_tag(entity_id: &str, command: &AccountCommand) -> Option<String> {
        match command {
            AccountCommand::Deposit { command_id, .. }
            | AccountCommand::Withdraw { command_id, .. }
            | AccountCommand::SetRiskLimits { command_id, .. } => {
                Some(format!("{COMMAND_TAG_PREFIX}{entity_id}/{command_id}"))
            }
            _ => None,
        }
    }

    fn remembers_every_command(&self) -> bool {
        Account::remembers_every_command(self)
    }

    fn tags(event: &AccountEvent) -> Vec<String> {
        SagaInput::order_of(event)
            .map(|order_id| vec![order_tag(order_id)])
            .unwrap_or_default()
    }

    fn effective_at(event: &AccountEvent) -> Option<i64> {
        Some(event.effective_at().micros())
    }
}

impl Persistent for OrderBook {
    fn tags(event: &BookEvent) -> Vec<String> {
        let orders = event.order_ids().into_iter().map(order_tag);
        match event {
            BookEvent::Traded(_) => std::iter::once("trade".to_owned()).chain(orders).collect(),
            _ => orders.collect(),
        }
    }
}

/// How an account's client command tags its events: `command:{account}/{command id}` (`/` is
/// in neither id).
const COMMAND_TAG_PREFIX: &str = "command:";

/// Events per read while an entity's stream is replayed for [`first_answer`].
const FIRST_ANSWER_PAGE_EVENTS: usize = 1_000;

/// The answer `command` got the first time, if the journal holds events tagged `tag` (its
/// [`Persistent::command_tag`]) in `stream`: the stream replayed up to the command's last
/// event, deciding the command again there (a repeat: its first reply, or the refusal of a
/// reused id with another body). `None` if no such event exists: the command is new. Costs a
/// replay of the stream's history up to the command; only retries older than what the
/// entity remembers pay it.
pub(crate) async fn first_answer<A: Persistent>(
    journal: &Journal,
    stream: &str,
    tag: String,
    command: &A::Command,
) -> Result<Option<Result<A::Reply, DomainError>>, JournalError> {
    let tagged = journal
        .read_all(0, FIRST_ANSWER_PAGE_EVENTS, &Filter::Tag(tag))
        .await?;
    let Some(last) = tagged
        .iter()
        .filter(|event| event.stream == stream)
        .map(|event| event.sequence)
        .max()
    else {
        return Ok(None);
    };
    let codec = A::codec();
    let mut state = A::default();
    let mut next = 1;
    while next <= last {
        let page = journal
            .read_stream(stream, next, FIRST_ANSWER_PAGE_EVENTS)
            .await?;
        if page.is_empty() {
            break;
        }
        for stored in page.iter().take_while(|stored| stored.sequence <= last) {
            state.apply(&codec.decode(stored)?);
            next = stored.sequence + 1;
        }
    }
    if next <= last {
        // The tag index names an event its stream does not hold: answer an error rather than
        // decide the command as new (or leave it waiting).
        return Err(JournalError::InvalidRequest(format!(
            "{stream} ends before sequence {last}, which its command's tag names"
        )));
    }
    match state.decide(command) {
        Ok(events) if events.is_empty() => Ok(Some(Ok(state.reply(command, &events)))),
        // The index says the command was applied, the state it left does not recognise it:
        // deciding it as new could apply it twice, so the caller gets an error instead.
        Ok(_) => Err(JournalError::InvalidRequest(format!(
            "{stream} does not recognise the command its tag names at sequence {last}"
        ))),
        Err(refusal) => Ok(Some(Err(refusal))),
    }
}

/// The tag of the account's and the book's events about an order: what its saga folds.
pub fn order_tag(order_id: OrderId) -> String {
    format!("{ORDER_TAG_PREFIX}{order_id}")
}

const ORDER_TAG_PREFIX: &str = "order:";

/// The order saga journals only what the account's and the book's events do not say
/// ([`OrderSaga::must_journal`]): on the happy path its start alone.
impl Persistent for OrderSaga {
    fn codec() -> EventCodec<SagaEvent> {
        EventCodec::new(SagaEvent::SCHEMA_VERSION, SagaEvent::name, SagaEvent::NAMES)
            .with_upcasters(&upcasters::SAGA_V1)
    }

    fn must_journal(&self, event: &SagaEvent) -> bool {
        OrderSaga::must_journal(self, event)
    }

    fn may_write_later(&self) -> bool {
        !self.is_finished()
    }

    fn related_tag(entity_id: &str) -> Option<String> {
        Some(format!("{ORDER_TAG_PREFIX}{entity_id}"))
    }

    fn related_inputs(stored: &StoredEvent) -> Vec<(String, SagaInput)> {
        // Events written before the tags existed were folded by journals that wrote
        // every saga event; they are not inputs.
        if !stored
            .tags
            .iter()
            .any(|tag| tag.starts_with(ORDER_TAG_PREFIX))
        {
            return Vec::new();
        }
        let inputs = match stored.kind.as_str() {
            Account::KIND => Account::codec()
                .decode_shared(stored)
                .map(|event| SagaInput::from_account(&event))
                .unwrap_or_default(),
            OrderBook::KIND => OrderBook::codec()
                .decode_shared(stored)
                .map(|event| SagaInput::from_book(&event))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        inputs
            .into_iter()
            .map(|(order_id, input)| (order_id.to_string(), input))
            .collect()
    }

    fn misses_an_earlier_fact(&self, input: &SagaInput) -> bool {
        OrderSaga::misses_an_earlier_fact(self, input)
    }
}

/// The journal stream of an entity.
pub fn stream_of<A: Aggregate>(entity_id: &str) -> String {
    format!("{}|{entity_id}", A::KIND)
}

/// A reply with the events its command wrote.
pub(crate) type ReplyWithEvents<A> = (<A as Aggregate>::Reply, Vec<<A as Aggregate>::Event>);

/// Where an ask's answer goes.
pub(crate) enum ReplyTo<A: Aggregate> {
    /// The reply only.
    Reply(oneshot::Sender<Result<A::Reply, Error>>),
    /// The reply and the events the command wrote (none for a repeated command).
    WithEvents(oneshot::Sender<Result<ReplyWithEvents<A>, Error>>),
}

/// A look at an entity's state in memory: run by its shard between commands, never while a
/// write of the entity is under way, so it sees every acknowledged command and nothing that
/// is not durable yet. It sends its own answer; dropped unrun (the entity could not recover,
/// the shard stopped), its caller learns so from the closed channel.
pub(crate) type Inspection<A> = Box<dyn FnOnce(&A) + Send>;

/// What an envelope carries: a command, or an inspection.
pub(crate) enum Request<A: Aggregate> {
    Command(A::Command),
    Inspect(Inspection<A>),
}

impl<A: Aggregate> Request<A> {
    fn priority(&self) -> Priority {
        match self {
            Request::Command(command) => A::priority(command),
            Request::Inspect(_) => Priority::Normal,
        }
    }
}

/// A command (or inspection) waiting for its entity, with where its reply goes.
pub(crate) struct Envelope<A: Aggregate> {
    pub(crate) entity_id: String,
    pub(crate) request: Request<A>,
    pub(crate) reply: Option<ReplyTo<A>>,
    /// Its [`Persistent::command_tag`] was looked up and not found: the command is new.
    pub(crate) looked_up: bool,
}

impl<A: Aggregate> Envelope<A> {
    /// The command carried.
    ///
    /// # Panics
    /// If it carries an inspection: shards take those apart before deciding anything.
    pub(crate) fn command(&self) -> &A::Command {
        match &self.request {
            Request::Command(command) => command,
            Request::Inspect(_) => unreachable!("inspections are never decided"),
        }
    }

    /// Whether a caller waits for the reply (an ask), so it is worth computing (a tell's is not).
    pub(crate) fn wants_reply(&self) -> bool {
        self.reply.is_some()
    }

    /// Answers the caller, if it asked (with no events: for refusals, failures and repeated
    /// commands); a reply that finds the caller gone (its deadline passed) is recorded in
    /// `dead_letters` under the entity's path.
    pub(crate) fn answer(
        self,
        result: Result<A::Reply, Error>,
        dead_letters: &DeadLetters,
        shard_path: &str,
    ) {
        self.answer_with_events(result, Vec::new(), dead_letters, shard_path);
    }

    /// [`Envelope::answer`] with the events the command wrote, for a caller that asked for them.
    pub(crate) fn answer_with_events(
        self,
        result: Result<A::Reply, Error>,
        events: Vec<A::Event>,
        dead_letters: &DeadLetters,
        shard_path: &str,
    ) {
        let Some(reply) = self.reply else { return };
        let delivered = match reply {
            ReplyTo::Reply(sender) => sender.send(result).is_ok(),
            ReplyTo::WithEvents(sender) => sender.send(result.map(|reply| (reply, events))).is_ok(),
        };
        if !delivered {
            dead_letters.record(DeadLetter::of::<Result<A::Reply, Error>>(
                format!("{shard_path}/{}", self.entity_id),
                "the caller stopped waiting before the reply",
            ));
        }
    }
}

/// Where an entity is in its life.
pub(crate) enum Phase<A: Aggregate> {
    /// Loading snapshot and journal tail; commands wait.
    Recovering,
    /// Ready for its next command.
    Ready,
    /// Writing the events of a batch of commands; commands wait. Boxed: an idle entity
    /// should not carry room for a batch (this keeps `Phase` at 16 bytes).
    Persisting(Box<Persisting<A>>),
    /// Reading the journal for the first answer to a command the state does not remember
    /// (see [`first_answer`]); commands wait.
    LookingUp,
}

/// The batch being persisted: its commands in order, each with its decided outcome.
pub(crate) struct Persisting<A: Aggregate> {
    pub(crate) batch: Vec<Decided<A>>,
}

/// A command of a batch, decided, waiting for the batch's write before it is answered.
pub(crate) struct Decided<A: Aggregate> {
    pub(crate) envelope: Envelope<A>,
    /// The reply (`None` for a tell), or the refusal.
    pub(crate) outcome: Result<Option<A::Reply>, Error>,
    /// The events it decided (already applied to the entity's state in memory).
    pub(crate) events: Vec<A::Event>,
}

/// Commands waiting for an entity that is busy (recovering or persisting).
pub(crate) struct Lanes<A: Aggregate> {
    normal: VecDeque<Envelope<A>>,
    priority: VecDeque<Envelope<A>>,
}

/// One entity inside its shard.
pub(crate) struct Cell<A: Aggregate> {
    /// Bumped at every (re)activation, so answers for an older incarnation are ignored.
    pub(crate) generation: u64,
    pub(crate) phase: Phase<A>,
    pub(crate) state: A,
    /// The last sequence of its stream that `state` includes.
    pub(crate) sequence: u64,
    pub(crate) events_since_snapshot: u64,
    /// Allocated only while commands wait, and dropped once they are all taken: an idle
    /// entity's queue costs one pointer (a `VecDeque` that once held a command keeps its
    /// buffer, four envelopes of 200 bytes, for as long as the entity lives).
    lanes: Option<Box<Lanes<A>>>,
    /// Events applied but not written ([`Persistent::must_journal`]), in order: written
    /// before the next event that must be. Allocated only while there are some: boxed so an
    /// entity without any pays one pointer, not a `Vec`'s three words.
    #[allow(clippy::box_collection)]
    pub(crate) unwritten: Option<Box<Vec<A::Event>>>,
    pub(crate) last_active: Instant,
}

impl<A: Aggregate> Cell<A> {
    pub(crate) fn recovering(generation: u64, now: Instant) -> Self {
        Self {
            generation,
            phase: Phase::Recovering,
            state: A::default(),
            sequence: 0,
            events_since_snapshot: 0,
            lanes: None,
            unwritten: None,
            last_active: now,
        }
    }

    /// Keeps events applied without writing them, for the next write.
    pub(crate) fn hold_unwritten(&mut self, events: Vec<A::Event>) {
        if !events.is_empty() {
            self.unwritten.get_or_insert_default().extend(events);
        }
    }

    /// How many events are applied but not written.
    pub(crate) fn unwritten_len(&self) -> usize {
        self.unwritten.as_ref().map_or(0, |events| events.len())
    }

    /// Takes the events applied but not written yet, oldest first.
    pub(crate) fn take_unwritten(&mut self) -> Vec<A::Event> {
        self.unwritten
            .take()
            .map(|events| *events)
            .unwrap_or_default()
    }

    /// Queues a command in its lane, or gives it back when that lane is full.
    pub(crate) fn enqueue(
        &mut self,
        envelope: Envelope<A>,
        normal_capacity: usize,
        priority_capacity: usize,
    ) -> Result<(), (Envelope<A>, usize)> {
        let lanes = self.lanes.get_or_insert_with(|| {
            Box::new(Lanes {
                normal: VecDeque::new(),
                priority: VecDeque::new(),
            })
        });
        let (lane, capacity) = match envelope.request.priority() {
            Priority::High => (&mut lanes.priority, priority_capacity),
            Priority::Normal => (&mut lanes.normal, normal_capacity),
        };
        if lane.len() >= capacity {
            return Err((envelope, capacity));
        }
        lane.push_back(envelope);
        Ok(())
    }

    /// Puts back a command taken with [`Cell::next`] at the front of its lane (it did not fit
    /// in the batch being cut): it stays next, whatever the lane's capacity.
    pub(crate) fn requeue_front(&mut self, envelope: Envelope<A>) {
        let lanes = self.lanes.get_or_insert_with(|| {
            Box::new(Lanes {
                normal: VecDeque::new(),
                priority: VecDeque::new(),
            })
        });
        match envelope.request.priority() {
            Priority::High => lanes.priority.push_front(envelope),
            Priority::Normal => lanes.normal.push_front(envelope),
        }
    }

    /// The next command to process: the priority lane first.
    pub(crate) fn next(&mut self) -> Option<Envelope<A>> {
        let lanes = self.lanes.as_mut()?;
        let next = lanes
            .priority
            .pop_front()
            .or_else(|| lanes.normal.pop_front());
        if lanes.priority.is_empty() && lanes.normal.is_empty() {
            self.lanes = None;
        }
        next
    }

    pub(crate) fn queued(&self) -> usize {
        self.lanes
            .as_ref()
            .map_or(0, |lanes| lanes.normal.len() + lanes.priority.len())
    }

    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Ready) && self.queued() == 0
    }
}

/// An entity as recovered: its state, the last sequence of its stream, and the events it
/// derived again from other streams' events (not written yet).
pub(crate) struct Recovered<A: Aggregate> {
    pub(crate) state: A,
    pub(crate) sequence: u64,
    pub(crate) unwritten: Vec<A::Event>,
    /// Events replayed on top of the snapshot: the next snapshot is due that much sooner.
    pub(crate) replayed: u64,
}

/// Recovers an entity: the latest snapshot, then every later event of its stream; for an
/// entity that folds other streams' events ([`Persistent::related_tag`]), its own stream
/// (never snapshotted) and then every event tagged for it, as the inputs they stand for.
///
/// Errors are the journal's, typed, so the breaker can tell a database that is down (a
/// failure) from data it cannot decode (not one).
pub(crate) async fn recover<A: Persistent>(
    journal: &Journal,
    snapshots: &SnapshotStore,
    entity_id: &str,
    page_events: usize,
) -> Result<Recovered<A>, JournalError> {
    if A::related_tag(entity_id).is_none() {
        let (state, sequence, replayed) =
            recover_own(journal, snapshots, entity_id, page_events).await?;
        return Ok(Recovered {
            state,
            sequence,
            unwritten: Vec::new(),
            replayed,
        });
    }
    let (folded, mut unwritten) =
        log_fold::fold_from_journal::<A>(journal, entity_id, u64::MAX, page_events).await?;
    if !folded.state.may_write_later() {
        unwritten.clear();
    }
    Ok(Recovered {
        state: folded.state,
        sequence: folded.sequence,
        unwritten,
        replayed: 0,
    })
}

/// An entity's own stream folded, from its latest snapshot (one of the current
/// [`Persistent::SNAPSHOT_VERSION`]; an older one is passed over): the state, its sequence,
/// and how many events were replayed on top of the snapshot.
async fn recover_own<A: Persistent>(
    journal: &Journal,
    snapshots: &SnapshotStore,
    entity_id: &str,
    page_events: usize,
) -> Result<(A, u64, u64), JournalError> {
    let stream = stream_of::<A>(entity_id);
    let (mut state, mut sequence) = match snapshots.load(&stream).await? {
        Some(snapshot) if snapshot.schema_version == A::SNAPSHOT_VERSION => {
            let state: A =
                codec::decode(&snapshot.payload).map_err(|reason| JournalError::Decode {
                    stream: stream.clone(),
                    sequence: snapshot.sequence,
                    name: snapshot.name.clone(),
                    version: snapshot.schema_version,
                    reason,
                })?;
            (state, snapshot.sequence)
        }
        Some(snapshot) => {
            info!(
                %stream,
                version = snapshot.schema_version,
                current = A::SNAPSHOT_VERSION,
                "a snapshot of another version is passed over: replaying the whole stream"
            );
            (A::default(), 0)
        }
        None => (A::default(), 0),
    };
    let from = sequence;
    let codec = A::codec();
    loop {
        let page = journal
            .read_stream(&stream, sequence + 1, page_events)
            .await?;
        let Some(last) = page.last() else { break };
        let last = last.sequence;
        for stored in &page {
            assert_eq!(stored.sequence, sequence + 1, "a stream has no gaps");
            let event = codec.decode(stored)?;
            state.apply(&event);
            sequence = stored.sequence;
        }
        debug_assert_eq!(sequence, last);
    }
    Ok((state, sequence, sequence - from))
}

/// Whether a journal error says the journal's infrastructure is failing (the database or
/// its writer), which is what trips the breaker. A conflict, a fence, a refused request or
/// undecodable data prove the database answered: they count as successes.
pub(crate) fn is_infrastructure_failure(error: &JournalError) -> bool {
    match error {
        JournalError::Database(_)
        | JournalError::Sqlite(_)
        | JournalError::Migration(_)
        | JournalError::Archive(_)
        | JournalError::WriterStopped => true,
        JournalError::Conflict { .. }
        | JournalError::Fenced { .. }
        | JournalError::Decode { .. }
        | JournalError::UnknownEvent { .. }
        | JournalError::Encode { .. }
        | JournalError::InvalidRequest(_)
        | JournalError::StaleOffset { .. }
        | JournalError::OffsetFenced { .. }
        | JournalError::Claimed(_) => false,
    }
}

/// Encodes decided events for the journal.
pub(crate) fn encode<A: Persistent>(events: &[A::Event]) -> Result<Vec<NewEvent>, String> {
    let codec = A::codec();
    events
        .iter()
        .map(|event| {
            codec
                .to_new_event(event, A::tags(event), A::effective_at(event))
                .map_err(|error| error.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// A million idle entities cost a million cells: the runtime's part of a cell (all but
    /// the aggregate's own state) stays at a few words.
    #[test]
    fn an_idle_cell_is_the_state_plus_a_few_words() {
        assert_eq!(size_of::<Phase<Account>>(), 16);
        let runtime_part = size_of::<Cell<Account>>() - size_of::<Account>();
        assert!(runtime_part <= 72, "{runtime_part} bytes besides the state");
    }
}
