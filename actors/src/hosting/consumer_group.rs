//! Consumer groups: competing consumers of the global log, with order per partition.
//!
//! The log is split into `P` partitions by the event's stream: [`partition_of`] is FNV-1a
//! (64-bit) of the stream's bytes modulo `P`, the hash shard regions use. Every event of a
//! stream lands in one partition, so one entity's events are handled in sequence order.
//!
//! A [`ConsumerGroup`] tracks its live members and assigns partitions: round-robin over the
//! members sorted by id (partition `p` goes to member `p mod n`), deterministic and balanced
//! (each member gets `⌊P/n⌋` or `⌈P/n⌉`). A [`ConsumerMember`] actor joins the group when it
//! starts and leaves it however it stops: a stop, an error, a panic or a kill all drop its
//! [`Membership`], which hands its partitions to the others.
//!
//! Guarantees (each tested):
//!
//! - **One processor per partition.** A partition moves in two steps: the group retargets it,
//!   the old holder finishes the event in hand, commits and releases it, and only then can
//!   the new target claim it. Two members never process one partition at once.
//! - **In order, at least once, no gaps.** A member handles a partition's events in offset
//!   order, calls the handler first and commits the offset after (once per batch per
//!   partition, and before it releases a partition). A new holder starts after the committed
//!   offset. So a hand-off on join or a graceful leave neither skips nor repeats an event; a
//!   member that dies repeats only what it handled and had not committed.
//!
//! A member follows the log with a [`LogTail`] from the lowest position of its partitions:
//! woken by the journal's log bus while in step, reading the database to catch up (at start,
//! after a rebalance that moved its lowest position back, after a lag) and after
//! [`ConsumerConfig::poll_interval`] without a batch on the bus.
//!
//! The group lives in one process (members on this node). A cluster-wide group needs the
//! same protocol on shared storage (the membership table), which the cluster layer owns.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tradefloor_persistence::{Error as StorageError, Filter, Journal, OffsetStore, StoredEvent};

use crate::error::Error;
use crate::hosting::log_tail::{LogTail, TailWaker};
use crate::hosting::region::shard_of;
use crate::runtime::supervisor::{ChildContext, ChildSpec, Progress};

/// The partition of an event of `stream`: FNV-1a (64-bit) of the stream's bytes, modulo
/// `partition_count`. Stable across processes, versions and platforms.
///
/// # Panics
///
/// If `partition_count` is zero.
pub fn partition_of(stream: &str, partition_count: u32) -> u32 {
    // The same function as entity id → shard; one hash to reason about.
    shard_of(stream, partition_count)
}

/// The target owner of each partition: round-robin over the members in their sorted order;
/// none for a partition this node does not serve.
fn targets(state: &GroupState) -> Vec<Option<&String>> {
    let sorted: Vec<&String> = state.members.iter().collect();
    state
        .serving
        .iter()
        .enumerate()
        .map(|(partition, serving)| {
            (*serving && !sorted.is_empty()).then(|| sorted[partition % sorted.len()])
        })
        .collect()
}

#[derive(Debug)]
struct GroupState {
    members: BTreeSet<String>,
    /// Who processes each partition now; `None` while it is free (between a release and a
    /// claim, or with no members).
    holders: Vec<Option<String>>,
    /// The partitions this node serves (all, unless a cluster spreads them over nodes).
    serving: Vec<bool>,
}

#[derive(Debug)]
struct GroupInner {
    name: String,
    partition_count: u32,
    state: Mutex<GroupState>,
    /// Bumped on every join, leave and release; members wake on it to rebalance.
    generation: watch::Sender<u64>,
}

/// A consumer group's coordinator: its members, the target assignment and who holds each
/// partition. Cheap to clone; every clone is the same group.
///
/// A shared struct rather than an actor: a member must leave even when it is killed, and
/// the one code that runs then is its state's `Drop`, which can take a lock but cannot wait
/// for an actor's answer. The lock is never held across an `await`.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    inner: Arc<GroupInner>,
}

/// The group's assignment, for the actor tree and for tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// The group's name: its key in the offset store.
    pub group: String,
    /// How many partitions the log is split into.
    pub partition_count: u32,
    /// Bumped on every join, leave and release.
    pub generation: u64,
    /// Live members, sorted.
    pub members: Vec<String>,
    /// The target owner of each partition.
    pub targets: Vec<Option<String>>,
    /// Who processes each partition now.
    pub holders: Vec<Option<String>>,
}

impl GroupStats {
    /// True when every partition is held by its target: no hand-off is under way.
    pub fn is_settled(&self) -> bool {
        self.targets == self.holders
    }
}

impl ConsumerGroup {
    /// A group named `name` (its key in the offset store) over `partition_count` partitions,
    /// fixed for the group's life: changing it moves streams between partitions.
    ///
    /// # Panics
    ///
    /// If `partition_count` is zero.
    pub fn new(name: impl Into<String>, partition_count: u32) -> Self {
        assert!(partition_count > 0, "a consumer group has partitions");
        let (generation, _) = watch::channel(0);
        Self {
            inner: Arc::new(GroupInner {
                name: name.into(),
                partition_count,
                state: Mutex::new(GroupState {
                    members: BTreeSet::new(),
                    holders: vec![None; partition_count as usize],
                    serving: vec![true; partition_count as usize],
                }),
                generation,
            }),
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many partitions the log is split into.
    pub fn partition_count(&self) -> u32 {
        self.inner.partition_count
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // Nothing panics while holding the lock, but a poisoned group must still let
        // members leave.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.inner
            .generation
            .send_modify(|generation| *generation += 1);
    }

    /// Adds `member` to the group. Partitions move to it as their holders release them.
    /// [`Error::PathTaken`] if a live member already has that id.
    pub fn join(&self, member: impl Into<String>) -> Result<Membership, Error> {
        let member = member.into();
        if !self.lock().members.insert(member.clone()) {
            return Err(Error::PathTaken {
                path: format!("{}/{member}", self.inner.name),
            });
        }
        self.bump();
        tracing::info!(group = %self.inner.name, %member, "member joined");
        Ok(Membership {
            group: self.clone(),
            member,
            seen: None,
        })
    }

    fn leave(&self, member: &str) {
        {
            let mut state = self.lock();
            state.members.remove(member);
            for holder in &mut state.holders {
                if holder.as_deref() == Some(member) {
                    *holder = None;
                }
            }
        }
        self.bump();
        tracing::info!(group = %self.inner.name, %member, "member left");
    }

    /// The current assignment.
    pub fn stats(&self) -> GroupStats {
        let state = self.lock();
        GroupStats {
            group: self.inner.name.clone(),
            partition_count: self.inner.partition_count,
            generation: *self.inner.generation.borrow(),
            members: state.members.iter().cloned().collect(),
            targets: targets(&state)
                .into_iter()
                .map(|target| target.cloned())
                .collect(),
            holders: state.holders.clone(),
        }
    }

    /// Serves only `partitions` on this node (a cluster spreads a group's partitions over
    /// its nodes): the others are finished, committed and released by their holders, then
    /// no member here claims them.
    pub fn serve_only(&self, partitions: &BTreeSet<u32>) {
        {
            let mut state = self.lock();
            for (partition, serving) in state.serving.iter_mut().enumerate() {
                *serving = partitions.contains(&(partition as u32));
            }
        }
        self.bump();
    }

    /// The partitions some member here holds right now.
    pub fn held(&self) -> BTreeSet<u32> {
        let state = self.lock();
        (0..self.inner.partition_count)
            .filter(|partition| state.holders[*partition as usize].is_some())
            .collect()
    }

    /// A receiver that sees every change of the group's generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }
}

/// One member's place in a [`ConsumerGroup`]; dropping it leaves the group and frees every
/// partition it held (without committing anything: the member is assumed dead).
#[derive(Debug)]
pub struct Membership {
    group: ConsumerGroup,
    member: String,
    /// The generation the member last rebalanced at.
    seen: Option<u64>,
}

impl Membership {
    /// The member's id.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The group.
    pub fn group(&self) -> &ConsumerGroup {
        &self.group
    }

    /// True if the group changed since the last [`mark_seen`](Self::mark_seen): the member
    /// should stop at the next event boundary and rebalance.
    pub fn changed(&self) -> bool {
        self.seen != Some(*self.group.inner.generation.borrow())
    }

    /// Records that the member is rebalancing at the current generation.
    pub fn mark_seen(&mut self) {
        self.seen = Some(*self.group.inner.generation.borrow());
    }

    /// The partitions this member holds but no longer targets: finish and commit them, then
    /// [`release`](Self::release) them.
    pub fn revoked(&self) -> Vec<u32> {
        let state = self.group.lock();
        let targets = targets(&state);
        (0..self.group.inner.partition_count)
            .filter(|partition| {
                let index = *partition as usize;
                state.holders[index].as_deref() == Some(self.member.as_str())
                    && targets[index].map(String::as_str) != Some(self.member.as_str())
            })
            .collect()
    }

    /// Gives up `partition`, which this member holds, so its target can claim it.
    pub fn release(&self, partition: u32) {
        {
            let mut state = self.group.lock();
            let holder = &mut state.holders[partition as usize];
            assert_eq!(
                holder.as_deref(),
                Some(self.member.as_str()),
                "releases its own"
            );
            *holder = None;
        }
        self.group.bump();
    }

    /// Claims every free partition targeted at this member and returns them: from now on
    /// only this member processes them, from their committed offsets.
    pub fn claim(&self) -> Vec<u32> {
        let mut state = self.group.lock();
        let state = &mut *state;
        let mine: Vec<bool> = targets(state)
            .into_iter()
            .map(|target| target.map(String::as_str) == Some(self.member.as_str()))
            .collect();
        let mut claimed = Vec::new();
        for (index, holder) in state.holders.iter_mut().enumerate() {
            if holder.is_none() && mine[index] {
                *holder = Some(self.member.clone());
                claimed.push(index as u32);
            }
        }
        claimed
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.group.leave(&self.member);
    }
}

/// What a member does with each event of its partitions.
///
/// `handle` returns `impl Future + Send` (write it as `async fn`): the member actor is
/// generic over its handler, so no future is boxed.
pub trait ConsumerHandler: Send + 'static {
    /// What [`handle`](Self::handle) fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Handles one event of `partition`. Called in offset order per partition, at least once
    /// per event: make it idempotent (an event can come again after a member died before
    /// committing it). An error fails the member; it is restarted and the event comes again.
    fn handle(
        &mut self,
        partition: u32,
        event: &StoredEvent,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// How a member reads the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Which events of the log the group consumes.
    pub filter: Filter,
    /// Most events read at once (offsets are committed once per batch per partition, so this
    /// also bounds what a dying member makes the next one repeat).
    pub batch_events_max: usize,
    /// How long a caught-up member waits for a batch on the log bus before it reads the
    /// database anyway, for events other processes appended (it wakes at once when the group
    /// changes or a batch is published).
    pub poll_interval: Duration,
    /// The shortest time between two wake-ups by the log bus: batches published meanwhile are
    /// taken together, so a busy log makes fewer, larger transactions (each a turn at SQLite's
    /// write lock and an fsync) at the cost of trailing the log by up to this much.
    pub batch_interval_min: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            filter: Filter::All,
            batch_events_max: 256,
            poll_interval: Duration::from_millis(100),
            batch_interval_min: crate::hosting::log_tail::BATCH_INTERVAL_MIN_DEFAULT,
        }
    }
}

impl ConsumerConfig {
    /// Why this configuration cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_events_max == 0 {
            return Err("batch_events_max is zero: no event could ever be handled".to_owned());
        }
        if self.poll_interval.is_zero() {
            return Err("poll_interval is zero: a caught-up member would spin".to_owned());
        }
        Ok(())
    }
}

/// Why a member stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError<E: std::error::Error + 'static> {
    /// Reading the log or loading or committing an offset failed (a refused commit,
    /// `StaleOffset`, means another process consumes under the same group name). The
    /// supervisor restarts the member; it resumes from the committed offsets.
    #[error("member {member} of {group}: storage failed: {source}")]
    Storage {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// What the persistence layer said.
        #[source]
        source: StorageError,
    },
    /// The handler failed on an event; it comes again after the restart.
    #[error(
        "member {member} of {group}: handler failed at offset {offset} of partition {partition}: {source}"
    )]
    Handler {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// The event's partition.
        partition: u32,
        /// The event's offset.
        offset: u64,
        /// What the handler said.
        #[source]
        source: E,
    },
}

/// A member's view, for the actor tree and for tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStats {
    /// The group.
    pub group: String,
    /// The member.
    pub member: String,
    /// The partitions it processes, and how far it has read each (at least its committed
    /// offset).
    pub partitions: BTreeMap<u32, u64>,
    /// Events handled by this incarnation.
    pub handled: u64,
    /// Offset commits by this incarnation.
    pub commits: u64,
}

/// Opaque token of a scheduled read; only the latest one is acted on.
#[derive(Debug)]
pub struct PollTicket(u64);

/// What a [`ConsumerMember`] answers to.
#[derive(Debug)]
pub enum ConsumerMessage {
    /// Report the member's view.
    Stats(RpcReplyPort<MemberStats>),
    /// Read the database now rather than at the end of the poll interval (a producer in
    /// another process that just appended can cut the latency this way; this process's
    /// appends reach the member on the log bus anyway).
    Wake,
    /// Internal: handle the next batch, if any.
    #[doc(hidden)]
    Poll(PollTicket),
    /// Internal: the log bus has a batch, or the poll interval passed without one.
    #[doc(hidden)]
    Tail,
    /// Internal: the group changed.
    #[doc(hidden)]
    Rebalance,
}

// Sent between actors of one node only: never serialized.
impl ractor::Message for ConsumerMessage {}

/// What a [`ConsumerMember`] is started with.
#[derive(Debug)]
pub struct ConsumerMemberArgs<H> {
    /// The group it joins.
    pub group: ConsumerGroup,
    /// Its id, unique among the group's live members.
    pub member: String,
    /// The journal it reads, and whose database holds the group's offsets.
    pub journal: Journal,
    /// Filter, batch size and poll interval.
    pub config: ConsumerConfig,
    /// What it does with each event.
    pub handler: H,
    /// Recorded on every batch and wake-up, for a supervisor's stall watch.
    pub progress: Option<Progress>,
}

/// Aborts a task when dropped (also when the actor is killed and skips `post_stop`).
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The state of a running [`ConsumerMember`].
pub struct MemberState<H> {
    membership: Membership,
    journal: Journal,
    /// From the lowest position of the owned partitions (sought there at every rebalance).
    tail: LogTail,
    /// Started once the actor runs (it needs the actor's reference).
    waker: Option<TailWaker>,
    offsets: OffsetStore,
    config: ConsumerConfig,
    handler: H,
    progress: Option<Progress>,
    /// Owned partitions → the offset read up to (every event of the partition up to it is
    /// handled; at least the committed offset).
    positions: BTreeMap<u32, u64>,
    handled: u64,
    commits: u64,
    ticket: u64,
    _watcher: Option<AbortOnDrop>,
}

impl<H> std::fmt::Debug for MemberState<H> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MemberState")
            .field("member", &self.membership.member)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

/// Whether to read again at once or when the tail's waker says so.
enum Next {
    Now,
    Later,
}

impl<H: ConsumerHandler> MemberState<H> {
    fn storage(&self, source: StorageError) -> ConsumerError<H::Error> {
        ConsumerError::Storage {
            group: self.membership.group.name().to_owned(),
            member: self.membership.member.clone(),
            source,
        }
    }

    /// Releases the partitions the member lost (all committed: this runs between batches)
    /// and claims the ones it gained, from their committed offsets.
    async fn rebalance(&mut self) -> Result<(), ConsumerError<H::Error>> {
        self.membership.mark_seen();
        for partition in self.membership.revoked() {
            self.positions.remove(&partition);
            self.membership.release(partition);
        }
        let group = self.membership.group.name().to_owned();
        for partition in self.membership.claim() {
            let committed = self
                .offsets
                .load(&group, partition)
                .await
                .map_err(|source| self.storage(source))?;
            self.positions.insert(partition, committed);
        }
        if let Some(lowest) = self.positions.values().min() {
            // A partition gained from its committed offset may be behind the tail.
            self.tail.seek(*lowest);
        }
        tracing::debug!(group, member = %self.membership.member, partitions = ?self.positions.keys().collect::<Vec<_>>(), "rebalanced");
        Ok(())
    }

    async fn commit(&mut self, pending: &BTreeMap<u32, u64>) -> Result<(), StorageError> {
        let group = self.membership.group.name();
        // Every partition's offset in one transaction (on SQLite, on the read models' writer).
        let mut transaction = self.journal.begin_read_models().await?;
        for (partition, offset) in pending {
            OffsetStore::commit_in(&mut transaction, group, *partition, *offset).await?;
        }
        transaction.commit().await?;
        self.commits += pending.len() as u64;
        Ok(())
    }

    /// Rebalances if the group changed, then takes the tail's next batch (from the lowest
    /// position of its partitions) and handles the events of its partitions it has not
    /// handled yet.
    async fn poll(&mut self) -> Result<Next, ConsumerError<H::Error>> {
        if self.membership.changed() {
            self.rebalance().await?;
        }
        if self.positions.is_empty() {
            return Ok(Next::Later);
        }
        let cursor = self.tail.cursor();
        let events = self
            .tail
            .next()
            .await
            .map_err(|source| self.storage(source))?;
        let partition_count = self.membership.group.partition_count();
        // Per partition, the last offset handled and not yet committed.
        let mut pending: BTreeMap<u32, u64> = BTreeMap::new();
        let mut scanned = cursor;
        let mut interrupted = false;
        for event in &events {
            assert!(event.global_offset > scanned, "the log is read in order");
            if self.membership.changed() {
                // Stop at this boundary so a partition we lose is released promptly.
                interrupted = true;
                break;
            }
            let partition = partition_of(&event.stream, partition_count);
            let unhandled = self
                .positions
                .get(&partition)
                .is_some_and(|position| event.global_offset > *position);
            if unhandled {
                if let Err(source) = self.handler.handle(partition, event).await {
                    // Keep what was handled before the failure; it must not come again.
                    let _ = self.commit(&pending).await;
                    return Err(ConsumerError::Handler {
                        group: self.membership.group.name().to_owned(),
                        member: self.membership.member.clone(),
                        partition,
                        offset: event.global_offset,
                        source,
                    });
                }
                self.handled += 1;
                pending.insert(partition, event.global_offset);
            }
            scanned = event.global_offset;
        }
        self.commit(&pending)
            .await
            .map_err(|source| self.storage(source))?;
        if interrupted {
            // The rest of the batch was not handled: see it again.
            self.tail.seek(scanned);
        } else {
            // The tail saw every event up to its cursor, and these were the matching ones.
            scanned = self.tail.cursor();
        }
        // Every event up to `scanned` of every owned partition is handled now.
        for position in self.positions.values_mut() {
            *position = (*position).max(scanned);
        }
        Ok(if interrupted || self.tail.has_more() {
            Next::Now
        } else {
            Next::Later
        })
    }

    fn stats(&self) -> MemberStats {
        MemberStats {
            group: self.membership.group.name().to_owned(),
            member: self.membership.member.clone(),
            partitions: self.positions.clone(),
            handled: self.handled,
            commits: self.commits,
        }
    }

    /// Schedules the next read now (any earlier scheduled read becomes stale), or leaves it
    /// to the tail's waker.
    fn schedule(&mut self, myself: &ActorRef<ConsumerMessage>, next: Next) {
        if let Next::Now = next {
            self.ticket += 1;
            let ticket = PollTicket(self.ticket);
            let _ = myself.send_message(ConsumerMessage::Poll(ticket));
        }
    }
}

/// A member of a consumer group: an actor that processes the events of the partitions the
/// group gives it. Spawn it with [`ConsumerMemberArgs`], or supervise it with
/// [`ConsumerMember::spec`].
pub struct ConsumerMember<H>(std::marker::PhantomData<fn() -> H>);

impl<H> ConsumerMember<H> {
    /// The actor (its state comes with [`ConsumerMemberArgs`]).
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<H> Default for ConsumerMember<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> std::fmt::Debug for ConsumerMember<H> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ConsumerMember")
    }
}

impl<H: ConsumerHandler> ConsumerMember<H> {
    /// How long [`Self::stats`] waits for an answer.
    pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);

    /// A child spec for a supervisor: each start builds the handler afresh with `make` and
    /// joins `group` as `member` (the previous incarnation has left by then: it is stopped
    /// before its restart is scheduled).
    pub fn spec<F>(
        name: impl Into<String>,
        group: ConsumerGroup,
        member: impl Into<String>,
        journal: Journal,
        config: ConsumerConfig,
        make: F,
    ) -> ChildSpec
    where
        F: Fn() -> H + Send + Sync + 'static,
    {
        let member = member.into();
        ChildSpec::new(name, "consumer", move |context: ChildContext| {
            let arguments = ConsumerMemberArgs {
                group: group.clone(),
                member: member.clone(),
                journal: journal.clone(),
                config: config.clone(),
                handler: make(),
                progress: Some(context.progress),
            };
            async move {
                let (actor, _join) =
                    Self::spawn_linked(None, Self::new(), arguments, context.supervisor).await?;
                Ok(actor.get_cell())
            }
        })
    }

    /// Asks `actor` for its view, waiting at most [`Self::STATS_TIMEOUT`].
    pub async fn stats(actor: &ActorRef<ConsumerMessage>) -> Result<MemberStats, Error> {
        crate::runtime::ask::ask(actor, ConsumerMessage::Stats, Self::STATS_TIMEOUT).await
    }
}

impl<H: ConsumerHandler> Actor for ConsumerMember<H> {
    type Msg = ConsumerMessage;
    type State = MemberState<H>;
    type Arguments = ConsumerMemberArgs<H>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        arguments: ConsumerMemberArgs<H>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ConsumerMemberArgs {
            group,
            member,
            journal,
            config,
            handler,
            progress,
        } = arguments;
        if let Err(reason) = config.validate() {
            return Err(Box::new(Error::StartFailed {
                actor: format!("{}/{member}", group.name()),
                reason: format!("invalid consumer config: {reason}"),
            }));
        }
        let membership = group.join(member)?;
        // Sought to the lowest committed position at the first rebalance.
        let tail = LogTail::new(
            journal.clone(),
            config.filter.clone(),
            0,
            config.batch_events_max,
        );
        Ok(MemberState {
            membership,
            offsets: OffsetStore::new(journal.read_models().clone()),
            tail,
            waker: None,
            journal,
            config,
            handler,
            progress,
            positions: BTreeMap::new(),
            handled: 0,
            commits: 0,
            ticket: 0,
            _watcher: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut changes = state.membership.group.subscribe();
        let actor = myself.clone();
        let watcher = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if actor.cast(ConsumerMessage::Rebalance).is_err() {
                    break;
                }
            }
        });
        state._watcher = Some(AbortOnDrop(watcher));
        state.waker = Some(TailWaker::spawn(
            &state.journal,
            myself.clone(),
            state.config.poll_interval,
            state.config.batch_interval_min,
            None,
            || ConsumerMessage::Tail,
        ));
        state.schedule(&myself, Next::Now);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConsumerMessage::Poll(PollTicket(ticket)) if ticket == state.ticket => {
                let next = state.poll().await?;
                if let Some(progress) = &state.progress {
                    progress.record();
                }
                state.schedule(&myself, next);
            }
            // Superseded by a later schedule.
            ConsumerMessage::Poll(_) => {}
            ConsumerMessage::Wake => {
                state.tail.check_database();
                state.schedule(&myself, Next::Now);
            }
            ConsumerMessage::Tail => {
                if let Some(waker) = &state.waker {
                    waker.woken(&mut state.tail);
                }
                state.schedule(&myself, Next::Now);
            }
            ConsumerMessage::Rebalance => {
                if state.membership.changed() {
                    state.schedule(&myself, Next::Now);
                }
            }
            ConsumerMessage::Stats(reply) => {
                let _ = reply.send(state.stats());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group state of `ids` over `partitions` partitions, serving every one.
    fn state(ids: &[&str], partitions: u32) -> GroupState {
        GroupState {
            members: ids.iter().map(|id| (*id).to_owned()).collect(),
            holders: vec![None; partitions as usize],
            serving: vec![true; partitions as usize],
        }
    }

    #[test]
    fn the_assignment_is_round_robin_over_sorted_members() {
        let group = state(&["b", "a", "c"], 7);
        let assigned: Vec<&str> = targets(&group)
            .into_iter()
            .map(|target| target.unwrap().as_str())
            .collect();
        assert_eq!(assigned, ["a", "b", "c", "a", "b", "c", "a"]);
        assert!(targets(&state(&[], 3)).iter().all(Option::is_none));
    }

    #[test]
    fn partitions_not_served_here_have_no_target_and_are_handed_back() {
        let group = ConsumerGroup::new("g", 4);
        let mut member = group.join("a").unwrap();
        member.mark_seen();
        assert_eq!(member.claim(), [0, 1, 2, 3]);
        group.serve_only(&BTreeSet::from([1, 3]));
        assert!(member.changed());
        assert_eq!(member.revoked(), [0, 2]);
        member.release(0);
        member.release(2);
        assert_eq!(group.held(), BTreeSet::from([1, 3]));
        assert!(member.claim().is_empty(), "nothing served here is free");
        assert_eq!(group.stats().targets.iter().flatten().count(), 2);
        group.serve_only(&BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(member.claim(), [0, 2]);
    }

    #[test]
    fn the_assignment_is_balanced() {
        for count in 1..6 {
            let ids: Vec<String> = (0..count).map(|index| format!("m{index}")).collect();
            let names: Vec<&str> = ids.iter().map(String::as_str).collect();
            for partitions in 1..40u32 {
                let group = state(&names, partitions);
                let assigned = targets(&group);
                let shares: Vec<usize> = ids
                    .iter()
                    .map(|id| assigned.iter().filter(|t| **t == Some(id)).count())
                    .collect();
                let (min, max) = (shares.iter().min(), shares.iter().max());
                assert!(
                    max.unwrap() - min.unwrap() <= 1,
                    "{partitions} over {count}"
                );
            }
        }
    }

    #[test]
    fn a_partition_moves_only_after_its_holder_releases_it() {
        let group = ConsumerGroup::new("g", 4);
        let mut first = group.join("a").unwrap();
        first.mark_seen();
        assert_eq!(first.claim(), [0, 1, 2, 3]);
        let second = group.join("b").unwrap();
        assert!(first.changed());
        // b is the target of 1 and 3, which a still holds.
        assert!(second.claim().is_empty());
        assert_eq!(first.revoked(), [1, 3]);
        first.release(1);
        assert_eq!(second.claim(), [1]);
        first.release(3);
        assert_eq!(second.claim(), [3]);
        assert!(group.stats().is_settled());
        assert!(matches!(group.join("a"), Err(Error::PathTaken { .. })));
        // A member that goes away frees its partitions for the others.
        drop(first);
        let stats = group.stats();
        assert_eq!(stats.members, ["b"]);
        assert_eq!(
            stats.holders,
            [None, Some("b".into()), None, Some("b".into())]
        );
        assert_eq!(second.claim(), [0, 2]);
        assert!(group.stats().is_settled());
    }

    #[test]
    fn the_partition_is_fnv1a_of_the_stream() {
        // FNV-1a 64 of "" is the offset basis 0xcbf29ce484222325.
        assert_eq!(
            partition_of("", 1_000),
            (0xcbf2_9ce4_8422_2325u64 % 1_000) as u32
        );
        assert_eq!(
            partition_of("account|alice", 16),
            partition_of("account|alice", 16)
        );
    }
}
