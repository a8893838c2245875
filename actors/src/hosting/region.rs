//! A shard region on one node: entity id → shard (a stable hash) → the shard's actor.
//!
//! The region bounds each shard's inbox, answers `ask` within the caller's deadline, and can
//! stop a shard cleanly (everything accepted is persisted and answered) and start it again,
//! possibly under a new fence epoch: the hand-off primitive the cluster uses.
//!
//! In a cluster ([`ShardRegion::start_clustered`]) the region starts no shard by itself: the
//! cluster starts and stops each under its owner's fence as ownership moves, and every `ask`
//! goes where the entity's shard lives ([`crate::routing::remote`]), forwarded to the owner node
//! when it is elsewhere and waiting (bounded) while it moves.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tradefloor_persistence::{Fence, Journal};

use crate::error::Error;
use crate::hosting::config::EntityConfig;
use crate::hosting::entity::{Envelope, Inspection, Persistent, ReplyTo, Request};
use crate::hosting::shard::{Activation, Shard, ShardArguments, ShardMessage, ShardStats};
use crate::routing::remote::{self, Call, Forward, Forwarding, Remoting};
use crate::runtime::breaker::CircuitBreaker;
use crate::runtime::dead_letters::DeadLetter;
use crate::runtime::mailbox::{Lane, MailboxConfig, MailboxSender, mailbox};
use crate::runtime::registry::{ActorInfo, ActorStatus, Registration, Registry, is_valid_path};

/// The shard of an entity: FNV-1a (64-bit) of its id, modulo the shard count. Stable across
/// processes, versions and platforms, since every node must agree on it.
pub fn shard_of(entity_id: &str, shard_count: u32) -> u32 {
    assert!(shard_count > 0, "a region has shards");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in entity_id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shard_count)) as u32
}

struct ShardHandle<A: Persistent> {
    actor: ActorRef<ShardMessage<A>>,
    /// One token per delivery in flight to the shard: the bound on its inbox.
    inbound: MailboxSender<()>,
    join: JoinHandle<()>,
}

/// The entities of kind `A` on this node, in `shard_count` shards.
pub struct ShardRegion<A: Persistent> {
    path: String,
    journal: Journal,
    config: EntityConfig,
    breaker: CircuitBreaker,
    registry: Registry,
    /// The region in the registry until it stops.
    registration: Mutex<Option<Registration>>,
    shards: Vec<RwLock<Option<ShardHandle<A>>>>,
    /// The cluster, when the region is one node's part of it.
    remoting: Option<Arc<Remoting>>,
}

/// How a command is asked; also the operation's name in a remote [`Call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asking {
    /// [`ShardRegion::ask`].
    Reply,
    /// [`ShardRegion::ask_new`].
    New,
    /// [`ShardRegion::ask_with_events`].
    WithEvents,
}

impl Asking {
    const ALL: [Self; 3] = [Self::Reply, Self::New, Self::WithEvents];

    fn operation(self) -> &'static str {
        match self {
            Self::Reply => "ask",
            Self::New => "ask_new",
            Self::WithEvents => "ask_with_events",
        }
    }
}

/// A reply and the events its command wrote.
type Answer<A> = (
    <A as tradefloor_domain::Aggregate>::Reply,
    Vec<<A as tradefloor_domain::Aggregate>::Event>,
);

impl<A: Persistent> ShardRegion<A> {
    /// Starts a region with every shard running (unfenced), in a registry of its own.
    /// `path` names it in the actor tree, e.g. `/guardian/regions/account`.
    pub async fn start(
        path: impl Into<String>,
        journal: Journal,
        config: EntityConfig,
    ) -> Result<Self, Error> {
        Self::start_in(Registry::default(), path, journal, config).await
    }

    /// Starts a region with every shard running (unfenced), registered in `registry`: the
    /// region at `path` (kind `region`, with its journal breaker) and each shard at
    /// `{path}/shard-{n}` (kind `shard`, with its entity count and inbox). Undeliverable
    /// commands and replies go to the registry's dead letters.
    ///
    /// Errors: [`Error::StartFailed`] if `path` is not a valid actor path,
    /// [`Error::PathTaken`] if something is registered there already.
    pub async fn start_in(
        registry: Registry,
        path: impl Into<String>,
        journal: Journal,
        config: EntityConfig,
    ) -> Result<Self, Error> {
        Self::start_with(registry, path.into(), journal, config, None).await
    }

    /// A region as one node's part of a cluster: registered like [`start_in`](Self::start_in)
    /// but with no shard running; the cluster starts each (under its fence) on its owner. An
    /// `ask` goes to the node `remoting` places the entity's shard on.
    pub async fn start_clustered(
        registry: Registry,
        path: impl Into<String>,
        journal: Journal,
        config: EntityConfig,
        remoting: Arc<Remoting>,
    ) -> Result<Self, Error> {
        if remoting.placement().shard_count() != config.shard_count {
            return Err(Error::StartFailed {
                actor: path.into(),
                reason: "the cluster's shard count differs from the region's".to_owned(),
            });
        }
        Self::start_with(registry, path.into(), journal, config, Some(remoting)).await
    }

    async fn start_with(
        registry: Registry,
        path: String,
        journal: Journal,
        config: EntityConfig,
        remoting: Option<Arc<Remoting>>,
    ) -> Result<Self, Error> {
        if !is_valid_path(&path) {
            return Err(Error::StartFailed {
                actor: path,
                reason: "not a valid actor path".to_owned(),
            });
        }
        let breaker = CircuitBreaker::new(format!("{path}/journal"), config.breaker);
        let info = ActorInfo::new(path.clone(), "region").with_breaker(breaker.clone());
        let registration = registry.register(Arc::new(info))?;
        let region = Self {
            breaker,
            registry,
            registration: Mutex::new(Some(registration)),
            path,
            journal,
            shards: (0..config.shard_count).map(|_| RwLock::new(None)).collect(),
            config,
            remoting,
        };
        if region.remoting.is_none() {
            for shard in 0..region.config.shard_count {
                region.start_shard(shard, None).await?;
            }
        }
        region.set_status(ActorStatus::Running);
        Ok(region)
    }

    /// The region's path in the actor tree.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The registry the region and its shards are registered in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn set_status(&self, status: ActorStatus) {
        let registration = self
            .registration
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(registration) = registration.as_ref() {
            registration.info().set_status(status);
        }
    }

    /// The breaker every journal write and recovery of the region's shards goes through.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends a command and waits up to `deadline` for its reply (sent once its events are
    /// durable). `Overloaded` at once if the shard's or the entity's queue is full.
    pub async fn ask(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
    ) -> Result<A::Reply, Error> {
        let (reply, _) = self
            .routed(
                entity_id,
                command,
                deadline,
                Asking::Reply,
                Forwarding::Allowed,
            )
            .await?;
        Ok(reply)
    }

    /// Like [`ask`](Self::ask) for an entity the caller has just created (a fresh id with
    /// nothing in its journal): if it is not in memory it starts from the default state
    /// without reading its journal. If the stream did have events after all, the command's
    /// write conflicts, the caller gets [`Error::Persistence`] and the entity recovers before
    /// its next command; a command that writes nothing (a refusal) is answered from the
    /// default state, so use this only for ids that are new.
    pub async fn ask_new(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
    ) -> Result<A::Reply, Error> {
        let (reply, _) = self
            .routed(
                entity_id,
                command,
                deadline,
                Asking::New,
                Forwarding::Allowed,
            )
            .await?;
        Ok(reply)
    }

    /// Like [`tell`](Self::tell) for an entity the caller has just created; see
    /// [`ask_new`](Self::ask_new).
    pub fn tell_new(&self, entity_id: &str, command: A::Command) -> Result<(), Error> {
        self.deliver(entity_id, command, None, Activation::New)
    }

    /// [`ShardRegion::ask`], answering also the events the command wrote (none when the
    /// entity answered a repeated command from its state), in the order they were written.
    /// For a caller that passes on what the entity did (e.g. a book's trades to the sagas of
    /// both orders) without reading the journal.
    pub async fn ask_with_events(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
    ) -> Result<(A::Reply, Vec<A::Event>), Error> {
        self.routed(
            entity_id,
            command,
            deadline,
            Asking::WithEvents,
            Forwarding::Allowed,
        )
        .await
    }

    /// Asks where the entity's shard lives: here, or (in a cluster, if `forwarding` allows)
    /// on its owner node.
    async fn routed(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
        asking: Asking,
        forwarding: Forwarding,
    ) -> Result<Answer<A>, Error> {
        let Some(remoting) = &self.remoting else {
            return self.ask_here(entity_id, command, deadline, asking).await;
        };
        let shard = shard_of(entity_id, self.config.shard_count);
        let what = self.entity_path(entity_id);
        remoting
            .route(
                shard,
                &what,
                deadline,
                forwarding,
                |left| self.ask_here(entity_id, command.clone(), left, asking),
                Forward {
                    target: &self.path,
                    operation: asking.operation(),
                    entity_id,
                    body: &command,
                },
            )
            .await
    }

    /// Asks a shard running on this node; `Stopped` if it does not run here.
    async fn ask_here(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
        asking: Asking,
    ) -> Result<Answer<A>, Error> {
        match asking {
            Asking::WithEvents => {
                let (reply, answer) = oneshot::channel();
                self.deliver(
                    entity_id,
                    command,
                    Some(ReplyTo::WithEvents(reply)),
                    Activation::Recover,
                )?;
                self.await_answer(entity_id, deadline, answer).await
            }
            Asking::Reply | Asking::New => {
                let activation = if asking == Asking::New {
                    Activation::New
                } else {
                    Activation::Recover
                };
                let (reply, answer) = oneshot::channel();
                self.deliver(entity_id, command, Some(ReplyTo::Reply(reply)), activation)?;
                let reply = self.await_answer(entity_id, deadline, answer).await?;
                Ok((reply, Vec::new()))
            }
        }
    }

    /// Serves a call another node routed here (see [`crate::routing::remote`]): asked here if the
    /// entity's shard is here (waiting out a hand-off to this node), else `Fenced`, so the
    /// caller routes again.
    pub async fn serve(&self, call: Call) -> remote::Reply {
        let Some(asking) = Asking::ALL
            .into_iter()
            .find(|asking| asking.operation() == call.operation)
        else {
            return Err(Error::Failed {
                actor: self.path.clone(),
                reason: format!("no operation {:?} on a region", call.operation),
            });
        };
        let command: A::Command = remote::decode(&self.path, &call.body)?;
        let deadline = remote::deadline_of(&call, Duration::MAX);
        let answer = self
            .routed(
                &call.entity_id,
                command,
                deadline,
                asking,
                Forwarding::Refused,
            )
            .await?;
        remote::encode(&self.path, &answer)
    }

    /// Asks a shard running on this node only (`Stopped` if it does not run here), for a
    /// caller that routed the call itself (the saga host).
    pub(crate) async fn ask_local(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
        new: bool,
    ) -> Result<A::Reply, Error> {
        let asking = if new { Asking::New } else { Asking::Reply };
        let (reply, _) = self.ask_here(entity_id, command, deadline, asking).await?;
        Ok(reply)
    }

    /// The number of shards (fixed for the cluster's life).
    pub fn shard_count(&self) -> u32 {
        self.config.shard_count
    }

    /// The cluster this region is part of, if any.
    pub fn remoting(&self) -> Option<&Arc<Remoting>> {
        self.remoting.as_ref()
    }

    async fn await_answer<T>(
        &self,
        entity_id: &str,
        deadline: Duration,
        answer: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        answer_within(self.entity_path(entity_id), deadline, answer).await
    }

    /// Runs `look` on the entity's state in memory (activating it if needed) and answers what
    /// it returns: a read that reflects every command acknowledged before it, and nothing not
    /// yet durable, without reading the journal. Served by a shard running on this node only
    /// (`Stopped` otherwise, e.g. in a cluster when another node owns the shard).
    pub async fn inspect<R: Send + 'static>(
        &self,
        entity_id: &str,
        deadline: Duration,
        look: impl FnOnce(&A) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (sender, answer) = oneshot::channel();
        let inspection: Inspection<A> = Box::new(move |state| {
            // A caller that stopped waiting wants nothing.
            let _ = sender.send(Ok(look(state)));
        });
        self.deliver_request(
            entity_id,
            Request::Inspect(inspection),
            None,
            Activation::Recover,
        )?;
        self.await_answer(entity_id, deadline, answer).await
    }

    /// Queues `command` for the entity now, in a shard on this node, and answers a future
    /// of its reply: commands queued one after the other reach the entity in that order,
    /// whenever their futures are awaited.
    pub(crate) fn ask_queued(
        &self,
        entity_id: &str,
        command: A::Command,
        deadline: Duration,
    ) -> Result<impl std::future::Future<Output = Result<A::Reply, Error>> + Send + 'static, Error>
    {
        let (reply, answer) = oneshot::channel();
        self.deliver(
            entity_id,
            command,
            Some(ReplyTo::Reply(reply)),
            Activation::Recover,
        )?;
        Ok(answer_within(self.entity_path(entity_id), deadline, answer))
    }

    /// Sends a command without waiting for its outcome. `Overloaded` at once if the shard's
    /// queue is full (the entity's own queue is checked on arrival). In a cluster it reaches
    /// shards running on this node only (`Stopped` otherwise): use `ask` to route.
    pub fn tell(&self, entity_id: &str, command: A::Command) -> Result<(), Error> {
        self.deliver(entity_id, command, None, Activation::Recover)
    }

    fn entity_path(&self, entity_id: &str) -> String {
        format!(
            "{}/shard-{}/{entity_id}",
            self.path,
            shard_of(entity_id, self.config.shard_count)
        )
    }

    fn deliver(
        &self,
        entity_id: &str,
        command: A::Command,
        reply: Option<ReplyTo<A>>,
        activation: Activation,
    ) -> Result<(), Error> {
        self.deliver_request(entity_id, Request::Command(command), reply, activation)
    }

    fn deliver_request(
        &self,
        entity_id: &str,
        request: Request<A>,
        reply: Option<ReplyTo<A>>,
        activation: Activation,
    ) -> Result<(), Error> {
        let shard = shard_of(entity_id, self.config.shard_count);
        let guard = self.shards[shard as usize]
            .read()
            .expect("no panics while holding the lock");
        let Some(handle) = guard.as_ref() else {
            return Err(self.dead_letter(shard, entity_id));
        };
        match handle.inbound.try_send((), Lane::Normal) {
            Ok(()) => {}
            Err(Error::Stopped { .. }) => return Err(self.dead_letter(shard, entity_id)),
            Err(overloaded) => return Err(overloaded),
        }
        let envelope = Envelope {
            entity_id: entity_id.to_owned(),
            request,
            reply,
            looked_up: false,
        };
        let delivery = ShardMessage::Deliver(envelope, activation);
        if handle.actor.cast(delivery).is_err() {
            // The shard died with our token: its inbox is gone with it.
            return Err(self.dead_letter(shard, entity_id));
        }
        Ok(())
    }

    /// Records a command for a stopped shard in the dead letters; the caller's error.
    fn dead_letter(&self, shard: u32, entity_id: &str) -> Error {
        let actor = format!("{}/shard-{shard}", self.path);
        if self.remoting.is_some() {
            // Not here: the call routes again (the shard moved, or is starting).
            return Error::Stopped { actor };
        }
        self.registry
            .dead_letters()
            .record(DeadLetter::of::<A::Command>(
                format!("{actor}/{entity_id}"),
                "the shard is stopped",
            ));
        Error::Stopped { actor }
    }

    /// Starts shard `shard`, writing under `fence` if given. Its entities activate (and
    /// recover) on their first command.
    pub async fn start_shard(&self, shard: u32, fence: Option<Fence>) -> Result<(), Error> {
        let path = format!("{}/shard-{shard}", self.path);
        // The shard's inbox bound: deliveries are tokens in a bounded mailbox (the priority
        // lane is unused), so the tree shows its length, capacity and refusals.
        let bound = MailboxConfig {
            capacity: self.config.shard_mailbox_capacity,
            priority_capacity: 1,
        };
        let (inbound, inbound_receiver) = mailbox::<()>(path.clone(), bound);
        let info = ActorInfo::new(path.clone(), "shard").with_mailbox(inbound.stats_handle());
        let registration = self.registry.register(Arc::new(info))?;
        let arguments = ShardArguments {
            shard,
            path: path.clone(),
            journal: self.journal.clone(),
            config: self.config.clone(),
            fence,
            breaker: self.breaker.clone(),
            inbound: inbound_receiver,
            registration,
            dead_letters: self.registry.dead_letters().clone(),
        };
        let (actor, join) = Actor::spawn(None, Shard::<A>::new(), arguments)
            .await
            .map_err(|error| Error::Failed {
                actor: path.clone(),
                reason: error.to_string(),
            })?;
        let mut slot = self.shards[shard as usize]
            .write()
            .expect("no panics while holding the lock");
        if let Some(running) = slot.as_ref() {
            actor.stop(None);
            return Err(Error::Failed {
                actor: path,
                reason: format!("already running as {:?}", running.actor.get_id()),
            });
        }
        *slot = Some(ShardHandle {
            actor,
            inbound,
            join,
        });
        Ok(())
    }

    /// Stops shard `shard` cleanly: it takes no new command, finishes and persists every
    /// command it accepted, answers them, and stops. Commands sent meanwhile get `Stopped`.
    pub async fn stop_shard(&self, shard: u32) -> Result<(), Error> {
        let path = format!("{}/shard-{shard}", self.path);
        let handle = self.shards[shard as usize]
            .write()
            .expect("no panics while holding the lock")
            .take()
            .ok_or_else(|| Error::Stopped {
                actor: path.clone(),
            })?;
        let (reply, drained) = oneshot::channel();
        if handle.actor.cast(ShardMessage::Stop(reply)).is_ok() {
            // An error here means the shard died; either way it is gone now.
            let _ = drained.await;
        }
        handle.join.await.map_err(|error| Error::Failed {
            actor: path,
            reason: error.to_string(),
        })
    }

    /// Counts of every running shard, in shard order.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let mut stats = Vec::new();
        for shard in 0..self.config.shard_count {
            let answer = {
                let guard = self.shards[shard as usize]
                    .read()
                    .expect("no panics while holding the lock");
                let Some(handle) = guard.as_ref() else {
                    continue;
                };
                let (reply, answer) = oneshot::channel();
                if handle.actor.cast(ShardMessage::Stats(reply)).is_err() {
                    continue;
                }
                answer
            };
            if let Ok(shard_stats) = answer.await {
                stats.push(shard_stats);
            }
        }
        stats
    }

    /// Passivates idle entities in every shard now, rather than at the next interval.
    pub fn passivate_idle(&self) {
        for slot in &self.shards {
            if let Some(handle) = slot
                .read()
                .expect("no panics while holding the lock")
                .as_ref()
            {
                let _ = handle.actor.cast(ShardMessage::Passivate);
            }
        }
    }

    /// Stops every shard cleanly, then deregisters the region.
    pub async fn stop(&self) -> Result<(), Error> {
        self.set_status(ActorStatus::Stopping);
        for shard in 0..self.config.shard_count {
            match self.stop_shard(shard).await {
                Ok(()) | Err(Error::Stopped { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let registration = self
            .registration
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(registration);
        Ok(())
    }
}

/// The answer an entity (at path `actor`) sends on `answer`, waited for up to `deadline`:
/// `Stopped` if it went away without answering, `Timeout` if it did not answer in time.
async fn answer_within<T>(
    actor: String,
    deadline: Duration,
    answer: oneshot::Receiver<Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(deadline, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::Stopped { actor }),
        Err(_) => Err(Error::Timeout {
            actor,
            after: deadline,
        }),
    }
}
