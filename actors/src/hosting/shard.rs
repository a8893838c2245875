//! A shard: one ractor actor hosting many entities of one kind.
//!
//! The shard sorts deliveries into its entities' queues and runs each entity one command at
//! a time (see [`crate::hosting::entity`]). Journal writes and recoveries run as tasks that report
//! back to the shard as messages, so a slow write blocks only its own entity.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use tradefloor_domain::Aggregate;
use tradefloor_persistence::{
    AppendOutcome, AppendRequest, Error as JournalError, Fence, Journal, NewEvent, Snapshot,
    SnapshotStore, codec,
};

use crate::error::Error;
use crate::hosting::config::EntityConfig;
use crate::hosting::entity::{
    self, Cell, Decided, Envelope, Persistent, Persisting, Phase, Recovered, Request,
    is_infrastructure_failure, stream_of,
};
use crate::runtime::breaker::CircuitBreaker;
use crate::runtime::dead_letters::{DeadLetter, DeadLetters};
use crate::runtime::mailbox::MailboxReceiver;
use crate::runtime::registry::{ActorStatus, Registration};

/// What a shard is asked or told.
pub(crate) enum ShardMessage<A: Persistent> {
    /// A command for one of its entities, and how to activate the entity if it is not in
    /// memory.
    Deliver(Envelope<A>, Activation),
    /// A recovery finished, or the breaker refused it (outer `Err`).
    Recovered {
        entity_id: String,
        generation: u64,
        result: Result<Result<Recovered<A>, JournalError>, Error>,
    },
    /// A journal write finished, or the breaker refused it or gave up on it (outer `Err`).
    Persisted {
        entity_id: String,
        generation: u64,
        result: Result<Result<AppendOutcome, JournalError>, Error>,
    },
    /// The journal was read for the first answer to a command (see `entity::first_answer`).
    LookedUp {
        generation: u64,
        envelope: Envelope<A>,
        result: Result<FirstAnswer<A>, JournalError>,
    },
    /// Passivate entities idle for longer than the configured time.
    Passivate,
    /// Finish what was accepted, then stop: the hand-off primitive.
    Stop(oneshot::Sender<()>),
    /// Report counts.
    Stats(oneshot::Sender<ShardStats>),
}

// Sent between actors of one node only: never serialized.
impl<A: Persistent> ractor::Message for ShardMessage<A> {}

/// How a shard activates an entity that is not in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Recover it from the latest snapshot and its journal tail (always correct).
    Recover,
    /// The sender vouches that its stream is empty (an id it just created): start from the
    /// default state without reading. If the stream did have events, the first write
    /// conflicts (optimistic concurrency) and the entity recovers before its next command.
    New,
}

/// A shard's counts, for the actor tree and metrics (counts, not a row per entity).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    /// The shard number.
    pub shard: u32,
    /// Entities in memory.
    pub entities: usize,
    /// Commands queued in entities' lanes.
    pub queued: usize,
    /// Entities writing to the journal right now.
    pub persisting: usize,
    /// Entities recovering right now.
    pub recovering: usize,
    /// Entities passivated since the shard started.
    pub passivated: u64,
    /// Commands refused because a lane was full.
    pub rejected: u64,
}

/// What a shard starts with.
pub(crate) struct ShardArguments {
    pub(crate) shard: u32,
    pub(crate) path: String,
    pub(crate) journal: Journal,
    pub(crate) config: EntityConfig,
    pub(crate) fence: Option<Fence>,
    /// The region's journal breaker, shared by all its shards.
    pub(crate) breaker: CircuitBreaker,
    /// The bound on deliveries sent to the shard and not yet sorted: one token per delivery,
    /// taken by the region before it sends, given back here as the delivery is sorted. Its
    /// stats are the shard's mailbox in the actor tree.
    pub(crate) inbound: MailboxReceiver<()>,
    /// The shard in the registry (deregistered when the shard's state is dropped).
    pub(crate) registration: Registration,
    /// Where undeliverable deliveries and replies go.
    pub(crate) dead_letters: DeadLetters,
}

pub(crate) struct ShardState<A: Persistent> {
    arguments: ShardArguments,
    snapshots: SnapshotStore,
    entities: HashMap<String, Cell<A>>,
    next_generation: u64,
    /// Recovery tasks running (each reports back with `Recovered`, even a stale one).
    recoveries_running: usize,
    /// Entities waiting for a recovery slot, with the generation they were activated as.
    recoveries_waiting: VecDeque<(String, u64)>,
    stopping: Option<oneshot::Sender<()>>,
    stats: ShardStats,
}

/// The shard actor of entity kind `A`.
pub(crate) struct Shard<A>(std::marker::PhantomData<fn() -> A>);

impl<A> Shard<A> {
    pub(crate) fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<A: Persistent> Actor for Shard<A> {
    type Msg = ShardMessage<A>;
    type State = ShardState<A>;
    type Arguments = ShardArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        arguments: ShardArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let interval = arguments.config.passivation_interval;
        myself.send_interval(interval, || ShardMessage::Passivate);
        let snapshots = SnapshotStore::new(
            arguments.journal.database().clone(),
            arguments.journal.config().payload_bytes_max,
        );
        let stats = ShardStats {
            shard: arguments.shard,
            ..ShardStats::default()
        };
        arguments.registration.info().set_entity_count(0);
        arguments
            .registration
            .info()
            .set_status(ActorStatus::Running);
        debug!(path = %arguments.path, "shard started");
        Ok(ShardState {
            arguments,
            snapshots,
            entities: HashMap::new(),
            next_generation: 0,
            recoveries_running: 0,
            recoveries_waiting: VecDeque::new(),
            stopping: None,
            stats,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMessage::Deliver(envelope, activation) => {
                let token = state.arguments.inbound.try_recv();
                debug_assert!(token.is_some(), "the region takes a token per delivery");
                state.deliver(&myself, envelope, activation);
            }
            ShardMessage::Recovered {
                entity_id,
                generation,
                result,
            } => state.recovered(&myself, entity_id, generation, result),
            ShardMessage::Persisted {
                entity_id,
                generation,
                result,
            } => state.persisted(&myself, entity_id, generation, result),
            ShardMessage::LookedUp {
                generation,
                envelope,
                result,
            } => state.looked_up(&myself, generation, envelope, result),
            ShardMessage::Passivate => state.passivate(),
            ShardMessage::Stop(reply) => {
                state
                    .arguments
                    .registration
                    .info()
                    .set_status(ActorStatus::Stopping);
                state.stopping = Some(reply);
            }
            ShardMessage::Stats(reply) => {
                let _ = reply.send(state.stats());
            }
        }
        state.stop_if_drained(&myself);
        Ok(())
    }
}

impl<A: Persistent> ShardState<A> {
    fn path_of(&self, entity_id: &str) -> String {
        format!("{}/{entity_id}", self.arguments.path)
    }

    fn deliver(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        envelope: Envelope<A>,
        activation: Activation,
    ) {
        if self.stopping.is_some() {
            let actor = self.path_of(&envelope.entity_id);
            self.arguments
                .dead_letters
                .record(DeadLetter::of::<A::Command>(
                    actor.clone(),
                    "the shard is stopping for hand-off",
                ));
            envelope.answer(
                Err(Error::Stopped { actor }),
                &self.arguments.dead_letters,
                &self.arguments.path,
            );
            return;
        }
        let entity_id = envelope.entity_id.clone();
        if !self.entities.contains_key(&entity_id) {
            match activation {
                Activation::Recover => self.activate(myself, &entity_id),
                Activation::New => self.activate_new(&entity_id),
            }
        }
        let config = &self.arguments.config;
        let (normal, priority) = (
            config.entity_mailbox_capacity,
            config.entity_priority_capacity,
        );
        let cell = self.entities.get_mut(&entity_id).expect("activated above");
        if matches!(cell.phase, Phase::Ready) && cell.queued() == 0 {
            // Nothing ahead of it: run it now, without queueing (no allocation).
            self.drive(myself, &entity_id, Some(envelope));
            return;
        }
        if let Err((envelope, capacity)) = cell.enqueue(envelope, normal, priority) {
            self.stats.rejected += 1;
            let actor = self.path_of(&entity_id);
            envelope.answer(
                Err(Error::Overloaded { actor, capacity }),
                &self.arguments.dead_letters,
                &self.arguments.path,
            );
            return;
        }
        self.drive(myself, &entity_id, None);
    }

    /// Starts an entity the sender vouches has no history: ready at once, nothing read.
    fn activate_new(&mut self, entity_id: &str) {
        self.next_generation += 1;
        let mut cell = Cell::recovering(self.next_generation, Instant::now());
        cell.phase = Phase::Ready;
        self.entities.insert(entity_id.to_owned(), cell);
        self.count_entities();
    }

    /// Starts (or restarts) an entity: a fresh incarnation that recovers from the journal.
    fn activate(&mut self, myself: &ActorRef<ShardMessage<A>>, entity_id: &str) {
        self.next_generation += 1;
        let generation = self.next_generation;
        match self.entities.get_mut(entity_id) {
            Some(cell) => {
                cell.generation = generation;
                cell.phase = Phase::Recovering;
                cell.state = A::default();
                cell.sequence = 0;
            }
            None => {
                self.entities.insert(
                    entity_id.to_owned(),
                    Cell::recovering(generation, Instant::now()),
                );
                self.count_entities();
            }
        }
        if self.recoveries_running >= self.arguments.config.recoveries_concurrent_max {
            self.recoveries_waiting
                .push_back((entity_id.to_owned(), generation));
            return;
        }
        self.start_recovery(myself, entity_id.to_owned(), generation);
    }

    /// Starts the next waiting recovery whose entity still waits for it, if any.
    fn start_waiting_recovery(&mut self, myself: &ActorRef<ShardMessage<A>>) {
        while let Some((entity_id, generation)) = self.recoveries_waiting.pop_front() {
            let current = self.entities.get(&entity_id).is_some_and(|cell| {
                cell.generation == generation && matches!(cell.phase, Phase::Recovering)
            });
            if current {
                self.start_recovery(myself, entity_id, generation);
                return;
            }
        }
    }

    fn start_recovery(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        entity_id: String,
        generation: u64,
    ) {
        self.recoveries_running += 1;
        let (journal, snapshots) = (self.arguments.journal.clone(), self.snapshots.clone());
        let breaker = self.arguments.breaker.clone();
        let page = self.arguments.config.recovery_page_events;
        let myself = myself.clone();
        tokio::spawn(async move {
            let recovery = entity::recover::<A>(&journal, &snapshots, &entity_id, page);
            let result = breaker.call_with(recovery, is_infrastructure_failure).await;
            // The shard may have stopped meanwhile; then there is nobody to tell.
            let _ = myself.cast(ShardMessage::Recovered {
                entity_id,
                generation,
                result,
            });
        });
    }

    /// Runs an entity's queued commands until it has to wait (for the journal) or is empty.
    /// `first`, when given, goes before anything queued (the caller checked none is).
    ///
    /// Commands that write nothing (refused, or repeated) are answered at once while no
    /// write is in the batch. Once one command decided events, the following ones join its
    /// batch (up to `batch_commands_max` commands and the journal's `append_events_max`
    /// events), each decided against the state the previous ones left, and all wait for the
    /// batch's one append.
    fn drive(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        entity_id: &str,
        mut first: Option<Envelope<A>>,
    ) {
        let commands_max = self.arguments.config.batch_commands_max.max(1);
        let events_max = self.arguments.journal.config().append_events_max;
        let Some(cell) = self.entities.get_mut(entity_id) else {
            return;
        };
        let driver = Driver {
            arguments: &self.arguments,
            myself,
            entity_id,
        };
        while matches!(cell.phase, Phase::Ready) {
            let mut cut = Cut::new(events_max);
            while cut.batch.len() < commands_max {
                let Some(envelope) = first.take().or_else(|| cell.next()) else {
                    break;
                };
                cell.last_active = Instant::now();
                if let Next::Stop = driver.admit(cell, envelope, &mut cut) {
                    break;
                }
            }
            if cut.batch.is_empty() {
                break;
            }
            driver.finish(cell, cut);
        }
    }

    /// Answers every command of a failed batch with `error`.
    fn fail_batch(&self, batch: Vec<Decided<A>>, error: &Error) {
        for decided in batch {
            decided.envelope.answer(
                Err(error.clone()),
                &self.arguments.dead_letters,
                &self.arguments.path,
            );
        }
    }

    fn persisted(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        entity_id: String,
        generation: u64,
        result: Result<Result<AppendOutcome, JournalError>, Error>,
    ) {
        let path = self.path_of(&entity_id);
        let Some(cell) = self.entities.get_mut(&entity_id) else {
            return;
        };
        if cell.generation != generation {
            return;
        }
        let Phase::Persisting(persisting) = std::mem::replace(&mut cell.phase, Phase::Ready) else {
            unreachable!("only a persisting entity gets a write's outcome");
        };
        let Persisting { batch } = *persisting;
        match result {
            Err(open @ Error::BreakerOpen { .. }) => {
                self.forget_unwritten(myself, &entity_id, batch, &open);
            }
            Err(error) => {
                // The write ran past the breaker's call timeout and was dropped: whether it
                // reached the database is unknown, so recover from the journal.
                warn!(entity = %path, %error, "journal write abandoned; recovering the entity");
                self.fail_batch(batch, &error);
                self.activate(myself, &entity_id);
            }
            Ok(Ok(outcome)) => {
                self.written(&entity_id, batch, &outcome);
                self.drive(myself, &entity_id, None);
            }
            Ok(Err(JournalError::Fenced { .. })) => {
                self.fail_batch(batch, &Error::Fenced { actor: path });
                self.fenced(myself);
            }
            Ok(Err(error)) => {
                // Whether anything was written is unknown (e.g. a lost commit reply), so the
                // state in memory cannot be trusted: recover from the journal.
                warn!(entity = %path, %error, "journal write failed; recovering the entity");
                self.fail_batch(
                    batch,
                    &Error::Persistence {
                        actor: path,
                        reason: error.to_string(),
                    },
                );
                self.activate(myself, &entity_id);
            }
        }
    }

    /// A batch the open breaker kept from the journal: nothing was attempted, so the journal
    /// still holds the entity as it was, but the batch is applied in memory. The commands fail
    /// fast and the entity is dropped from memory without a read (which the open breaker would
    /// refuse too); its waiting commands activate it again, recovering it from the journal once
    /// the breaker lets a read through.
    fn forget_unwritten(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        entity_id: &str,
        batch: Vec<Decided<A>>,
        open: &Error,
    ) {
        self.fail_batch(batch, open);
        let mut cell = self
            .entities
            .remove(entity_id)
            .expect("its write was running");
        self.count_entities();
        let mut waiting = Vec::with_capacity(cell.queued());
        while let Some(envelope) = cell.next() {
            waiting.push(envelope);
        }
        for envelope in waiting {
            self.deliver(myself, envelope, Activation::Recover);
        }
    }

    /// A batch's append is durable: only now may its callers hear of it, in order; the
    /// entity is snapshotted when one is due.
    fn written(&mut self, entity_id: &str, batch: Vec<Decided<A>>, outcome: &AppendOutcome) {
        let cell = self
            .entities
            .get_mut(entity_id)
            .expect("its write was running");
        assert_eq!(
            outcome.first_sequence,
            cell.sequence + 1,
            "the journal appends right after the head"
        );
        cell.sequence = outcome.last_sequence;
        for decided in batch {
            answer_decided(decided, &self.arguments.dead_letters, &self.arguments.path);
        }
        cell.events_since_snapshot += outcome.last_sequence + 1 - outcome.first_sequence;
        let every = self.arguments.config.snapshot_every_events;
        // An entity that skips events is never snapshotted: its recovery derives them again
        // from other streams, which a snapshot would not say it did.
        let snapshots = A::related_tag(entity_id).is_none();
        if snapshots && every > 0 && cell.events_since_snapshot >= every {
            cell.events_since_snapshot = 0;
            save_snapshot(
                self.arguments.journal.clone(),
                self.snapshots.clone(),
                stream_of::<A>(entity_id),
                cell.sequence,
                cell.state.clone(),
            );
        }
    }

    /// Answers a command with its first answer, found in the journal, or decides it as new.
    fn looked_up(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        generation: u64,
        mut envelope: Envelope<A>,
        result: Result<FirstAnswer<A>, JournalError>,
    ) {
        let entity_id = envelope.entity_id.clone();
        let path = self.path_of(&entity_id);
        let (dead_letters, shard_path) = (&self.arguments.dead_letters, &self.arguments.path);
        let cell = self
            .entities
            .get_mut(&entity_id)
            .filter(|cell| cell.generation == generation);
        let Some(cell) = cell.filter(|cell| matches!(cell.phase, Phase::LookingUp)) else {
            // The shard was fenced meanwhile and dropped its entities.
            let actor = path;
            return envelope.answer(Err(Error::Stopped { actor }), dead_letters, shard_path);
        };
        cell.phase = Phase::Ready;
        metrics::counter!("tradefloor_entity_command_lookups_total", "kind" => A::KIND,
            "found" => if matches!(result, Ok(Some(_))) { "yes" } else { "no" })
        .increment(1);
        match result {
            Ok(None) => {
                envelope.looked_up = true;
                return self.drive(myself, &entity_id, Some(envelope));
            }
            Ok(Some(first)) => {
                let first = first.map_err(Error::Rejected);
                envelope.answer(first, dead_letters, shard_path);
            }
            Err(error) => {
                let reason = format!("reading the first answer failed: {error}");
                let failure = Error::Persistence {
                    actor: path,
                    reason,
                };
                envelope.answer(Err(failure), dead_letters, shard_path);
            }
        }
        self.drive(myself, &entity_id, None);
    }

    fn recovered(
        &mut self,
        myself: &ActorRef<ShardMessage<A>>,
        entity_id: String,
        generation: u64,
        result: Result<Result<Recovered<A>, JournalError>, Error>,
    ) {
        self.recoveries_running -= 1;
        self.start_waiting_recovery(myself);
        let path = self.path_of(&entity_id);
        let Some(cell) = self.entities.get_mut(&entity_id) else {
            return;
        };
        if cell.generation != generation {
            return;
        }
        let refusal = match result {
            Ok(Ok(Recovered {
                state,
                sequence,
                unwritten,
                replayed,
            })) => {
                cell.state = state;
                cell.sequence = sequence;
                cell.take_unwritten();
                cell.hold_unwritten(unwritten);
                cell.events_since_snapshot = replayed;
                cell.phase = Phase::Ready;
                self.drive(myself, &entity_id, None);
                return;
            }
            // The breaker is open (nothing was read) or the read was abandoned.
            Err(error) => error,
            Ok(Err(error)) => Error::Persistence {
                actor: path.clone(),
                reason: error.to_string(),
            },
        };
        // The entity stays out of memory: its next command activates it again.
        warn!(entity = %path, %refusal, "recovery failed; the entity's commands are refused");
        let mut cell = self.entities.remove(&entity_id).expect("looked up above");
        self.count_entities();
        while let Some(envelope) = cell.next() {
            envelope.answer(
                Err(refusal.clone()),
                &self.arguments.dead_letters,
                &self.arguments.path,
            );
        }
    }

    /// A newer owner holds this shard: refuse everything queued and stop.
    fn fenced(&mut self, myself: &ActorRef<ShardMessage<A>>) {
        info!(shard = %self.arguments.path, "fenced off by a newer owner; stopping the shard");
        for (entity_id, mut cell) in self.entities.drain() {
            let actor = format!("{}/{entity_id}", self.arguments.path);
            while let Some(envelope) = cell.next() {
                envelope.answer(
                    Err(Error::Fenced {
                        actor: actor.clone(),
                    }),
                    &self.arguments.dead_letters,
                    &self.arguments.path,
                );
            }
        }
        self.count_entities();
        myself.stop(Some("fenced".to_owned()));
    }

    fn passivate(&mut self) {
        let idle_after = self.arguments.config.passivate_after;
        let now = Instant::now();
        let before = self.entities.len();
        self.entities.retain(|_, cell| {
            !(cell.is_idle() && now.duration_since(cell.last_active) >= idle_after)
        });
        let passivated = before - self.entities.len();
        self.count_entities();
        if passivated > 0 {
            self.stats.passivated += passivated as u64;
            debug!(shard = %self.arguments.path, passivated, "passivated idle entities");
        }
    }

    /// Shows the shard's entity count in the actor tree (one atomic store).
    fn count_entities(&self) {
        let info = self.arguments.registration.info();
        info.set_entity_count(self.entities.len() as u64);
    }

    fn stats(&self) -> ShardStats {
        let mut stats = self.stats.clone();
        stats.entities = self.entities.len();
        stats.queued = self.entities.values().map(Cell::queued).sum();
        stats.persisting = self
            .entities
            .values()
            .filter(|cell| matches!(cell.phase, Phase::Persisting(_)))
            .count();
        stats.recovering = self
            .entities
            .values()
            .filter(|cell| matches!(cell.phase, Phase::Recovering))
            .count();
        stats
    }

    /// Once stopping and every accepted command is answered, stop.
    fn stop_if_drained(&mut self, myself: &ActorRef<ShardMessage<A>>) {
        if self.stopping.is_none() || self.arguments.inbound.stats().len > 0 {
            return;
        }
        if self.entities.values().all(Cell::is_idle) {
            let reply = self.stopping.take().expect("checked above");
            let _ = reply.send(());
            myself.stop(Some("stopped for hand-off".to_owned()));
        }
    }
}

/// A batch being cut from an entity's queue by [`ShardState::drive`].
struct Cut<A: Persistent> {
    batch: Vec<Decided<A>>,
    /// The batch's write, encoded: empty while nothing of the batch must be written.
    new_events: Vec<NewEvent>,
    /// Events of this batch not written (yet): taken by its first write, if any.
    held: Vec<A::Event>,
    /// The journal's bound on one append.
    events_max: usize,
}

impl<A: Persistent> Cut<A> {
    fn new(events_max: usize) -> Self {
        Self {
            batch: Vec::new(),
            new_events: Vec::new(),
            held: Vec::new(),
            events_max,
        }
    }
}

/// Whether the cut goes on after a command.
enum Next {
    Continue,
    Stop,
}

/// What [`ShardState::drive`] needs besides the entity's cell.
struct Driver<'a, A: Persistent> {
    arguments: &'a ShardArguments,
    myself: &'a ActorRef<ShardMessage<A>>,
    entity_id: &'a str,
}

impl<A: Persistent> Driver<'_, A> {
    /// Decides `envelope`'s command into the cut: answered at once while the cut writes
    /// nothing (a refusal, a repeat), else applied in memory and added to the batch.
    fn admit(&self, cell: &mut Cell<A>, envelope: Envelope<A>, cut: &mut Cut<A>) -> Next {
        if let Request::Inspect(_) = envelope.request {
            return self.inspect(cell, envelope, cut);
        }
        let decision = cell.state.decide(envelope.command());
        let tag = A::command_tag(self.entity_id, envelope.command());
        let known = envelope.looked_up
            || matches!(&decision, Ok(events) if events.is_empty())
            || cell.state.remembers_every_command();
        if let Some(tag) = tag.as_ref().filter(|_| !known) {
            if cut.batch.is_empty() {
                cell.phase = Phase::LookingUp;
                look_up(
                    &self.arguments.journal,
                    self.myself,
                    cell.generation,
                    tag,
                    envelope,
                );
            } else {
                // Looked up once the batch is durable, so the lookup sees it.
                cell.requeue_front(envelope);
            }
            return Next::Stop;
        }
        let events = match decision {
            Err(refusal) => {
                self.answer_in_order(envelope, Err(Error::Rejected(refusal)), cut);
                return Next::Continue;
            }
            Ok(events) if events.is_empty() => {
                // A repeat of an applied command: the first outcome, nothing to write.
                let reply = envelope
                    .wants_reply()
                    .then(|| cell.state.reply(envelope.command(), &events));
                self.answer_in_order(envelope, Ok(reply), cut);
                return Next::Continue;
            }
            Ok(events) => events,
        };
        if !cut.new_events.is_empty() && cut.new_events.len() + events.len() > cut.events_max {
            // Not in this append: it goes first in the next batch.
            cell.requeue_front(envelope);
            return Next::Stop;
        }
        if let Err(reason) = write_or_hold(cell, &events, tag.as_deref(), cut) {
            // Nothing of it applied: refused like a decision would be, at once.
            let actor = format!("{}/{}", self.arguments.path, self.entity_id);
            let failure = Error::Failed { actor, reason };
            envelope.answer(
                Err(failure),
                &self.arguments.dead_letters,
                &self.arguments.path,
            );
            return Next::Continue;
        }
        // Applied now so the next command of the batch is decided after it; thrown away (the
        // entity recovers) if the write fails.
        for event in &events {
            cell.state.apply(event);
        }
        let reply = envelope
            .wants_reply()
            .then(|| cell.state.reply(envelope.command(), &events));
        cut.batch.push(Decided {
            envelope,
            outcome: Ok(reply),
            events,
        });
        Next::Continue
    }

    /// Runs an inspection, unless the cut has commands: it must not see their events before
    /// they are durable, so it waits for the next batch.
    fn inspect(&self, cell: &mut Cell<A>, envelope: Envelope<A>, cut: &Cut<A>) -> Next {
        if !cut.batch.is_empty() {
            cell.requeue_front(envelope);
            return Next::Stop;
        }
        if let Request::Inspect(inspect) = envelope.request {
            inspect(&cell.state);
        }
        Next::Continue
    }

    /// Answers a command that writes nothing now if nothing is before it in the cut, else
    /// after the batch before it (in order).
    fn answer_in_order(
        &self,
        envelope: Envelope<A>,
        outcome: Result<Option<A::Reply>, Error>,
        cut: &mut Cut<A>,
    ) {
        let decided = Decided {
            envelope,
            outcome,
            events: Vec::new(),
        };
        if cut.batch.is_empty() {
            answer_decided(decided, &self.arguments.dead_letters, &self.arguments.path);
        } else {
            cut.batch.push(decided);
        }
    }

    /// Ends a cut: answers it at once if it writes nothing (its events' facts are durable
    /// elsewhere), else starts its append and waits for it.
    fn finish(&self, cell: &mut Cell<A>, cut: Cut<A>) {
        let Cut {
            batch,
            new_events,
            held,
            ..
        } = cut;
        if new_events.is_empty() {
            cell.hold_unwritten(held);
            if !cell.state.may_write_later() {
                cell.take_unwritten();
            }
            for decided in batch {
                answer_decided(decided, &self.arguments.dead_letters, &self.arguments.path);
            }
            return;
        }
        debug_assert!(held.is_empty(), "a write takes what was held");
        let request = AppendRequest {
            stream: stream_of::<A>(self.entity_id),
            kind: A::KIND.to_owned(),
            expected_sequence: cell.sequence,
            events: new_events,
            fence: self.arguments.fence.clone(),
        };
        let (journal, breaker, myself, generation) = (
            self.arguments.journal.clone(),
            self.arguments.breaker.clone(),
            self.myself.clone(),
            cell.generation,
        );
        let entity_id = self.entity_id.to_owned();
        tokio::spawn(async move {
            // Not polled at all when the breaker is open: nothing is written then.
            let result = breaker
                .call_with(journal.append(request), is_infrastructure_failure)
                .await;
            let _ = myself.cast(ShardMessage::Persisted {
                entity_id,
                generation,
                result,
            });
        });
        cell.phase = Phase::Persisting(Box::new(Persisting { batch }));
    }
}

/// Adds `events` to the cut's write (after the events skipped so far, so the stream stays a
/// prefix; tagged `tag` if the command has one), or holds them unwritten if nothing makes the
/// cut write. An encoding failure leaves the skipped events held for the next write.
fn write_or_hold<A: Persistent>(
    cell: &mut Cell<A>,
    events: &[A::Event],
    tag: Option<&str>,
    cut: &mut Cut<A>,
) -> Result<(), String> {
    let writes = tag.is_some()
        || !cut.new_events.is_empty()
        || events.iter().any(|event| cell.state.must_journal(event))
        || cell.unwritten_len() + cut.held.len() + events.len() >= cut.events_max / 2;
    if !writes {
        cut.held.extend(events.iter().cloned());
        return Ok(());
    }
    let mut skipped = cell.take_unwritten();
    skipped.append(&mut cut.held);
    let encoded = entity::encode::<A>(&skipped).and_then(|mut encoded| {
        encoded.extend(entity::encode::<A>(events)?);
        Ok(encoded)
    });
    match encoded {
        Ok(mut encoded) => {
            if let Some(tag) = tag {
                let first = encoded.len() - events.len();
                for event in &mut encoded[first..] {
                    event.tags.push(tag.to_owned());
                }
            }
            cut.new_events.extend(encoded);
            Ok(())
        }
        Err(reason) => {
            cell.hold_unwritten(skipped);
            Err(reason)
        }
    }
}

/// What the journal says of a command the state does not remember: its first answer, or
/// `None` if it is new.
type FirstAnswer<A> = Option<Result<<A as Aggregate>::Reply, tradefloor_domain::Error>>;

/// Reads the first answer to `envelope`'s command (tagged `tag`) off the shard, and sends it
/// back with the envelope.
fn look_up<A: Persistent>(
    journal: &Journal,
    myself: &ActorRef<ShardMessage<A>>,
    generation: u64,
    tag: &str,
    envelope: Envelope<A>,
) {
    let (journal, myself, tag) = (journal.clone(), myself.clone(), tag.to_owned());
    tokio::spawn(async move {
        let stream = stream_of::<A>(&envelope.entity_id);
        let result = entity::first_answer::<A>(&journal, &stream, tag, envelope.command()).await;
        let _ = myself.cast(ShardMessage::LookedUp {
            generation,
            envelope,
            result,
        });
    });
}

fn save_snapshot<A: Persistent>(
    journal: Journal,
    snapshots: SnapshotStore,
    stream: String,
    sequence: u64,
    state: A,
) {
    tokio::spawn(async move {
        let payload = match codec::encode(&state) {
            Ok(payload) => payload,
            Err(reason) => return warn!(%stream, %reason, "cannot encode a snapshot"),
        };
        let recorded_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as i64);
        let snapshot = Snapshot {
            stream,
            sequence,
            name: A::KIND.to_owned(),
            schema_version: A::SNAPSHOT_VERSION,
            payload,
            recorded_at,
        };
        // On SQLite, queue behind this process's other writers (see `Journal::write_turn`).
        let _turn = journal.write_turn().await;
        // A lost snapshot costs only a longer recovery.
        if let Err(error) = snapshots.save(&snapshot).await {
            warn!(stream = %snapshot.stream, %error, "snapshot not saved");
        }
    });
}

/// Answers a decided command of a batch whose events are durable (or need no write).
fn answer_decided<A: Aggregate>(decided: Decided<A>, dead_letters: &DeadLetters, path: &str) {
    match decided.outcome {
        Ok(Some(reply)) => {
            decided
                .envelope
                .answer_with_events(Ok(reply), decided.events, dead_letters, path);
        }
        Ok(None) => {}
        Err(refusal) => decided.envelope.answer(Err(refusal), dead_letters, path),
    }
}
