//! Tradefloor actors: the actor runtime on ractor, and the trading application built on it
//! from `tradefloor-domain`.
//!
//! ractor gives actors, links and supervision events; its mailboxes are unbounded and it
//! restarts nothing by itself. This crate adds what a serious actor platform needs on top:
//! bounded mailboxes with a priority lane, supervisors with restart strategies, intensity and
//! backoff, circuit breakers, dead letters and an inspectable actor tree; then persistent
//! entities in shard regions, sagas, projections and consumer groups.
//!
//! # Modules
//!
//! In four folders, one layer each: [`runtime`] (mailboxes, supervision, breakers, the
//! registry, dead letters), [`hosting`] (entities, shards, regions, the saga host, the
//! consumers of the log), [`routing`] (location transparency) and [`trading`] (the
//! application).
//!
//! - [`mailbox`](runtime::mailbox): bounded mailboxes with a priority lane and a signal lane that bypasses the
//!   bound; overload answered at once or after waiting up to a deadline.
//! - [`breaker`](runtime::breaker): circuit breakers (closed, open, one half-open probe, reset backoff).
//! - [`dead_letters`](runtime::dead_letters): undelivered messages, counted, the latest kept.
//! - [`registry`](runtime::registry): the node's live actors and the actor tree served by `GET /v1/actors`.
//! - [`entity`](hosting::entity), [`region`](hosting::region): persistent entities hosting `domain` aggregates, inside shard
//!   actors, routed by a stable hash; the shard stop/start hand-off primitive. A region's
//!   journal writes and recoveries go through one circuit breaker; the region and its shards
//!   (with entity counts, not a row per entity) are in the registry, and undeliverable
//!   commands and orphaned replies are dead letters.
//! - [`config`](hosting::config): the entity runtime's limits.
//! - [`saga_host`](hosting::saga_host): sagas as persistent process managers: their effects carried out, their
//!   deadlines ticked, resumed after a restart.
//! - [`log_tail`](hosting::log_tail): following the global log from the journal's log bus, and from the
//!   database to catch up; what projections, consumer groups and the book feed read with.
//! - [`projection`](hosting::projection): read models in SQL tables fed from the global log, each batch and its
//!   offset in one transaction (exactly once); rebuild from offset 0; an event they cannot
//!   apply is parked in the [`dead_letter_table`](hosting::dead_letter_table) and they go on.
//! - [`consumer_group`](hosting::consumer_group): members sharing the log's partitions (by a stable hash of the
//!   stream), each partition processed by one member in order, reassigned as members come
//!   and go (at least once).
//! - [`trading`]: the trading application: account, book and saga regions, the durable book
//!   feed, SQL read models, and the [`Exchange`](trading::Exchange) facade.
//! - [`supervisor`](runtime::supervisor), [`backoff`](runtime::backoff), [`guardian`](runtime::guardian): supervisors that start ordered children and
//!   restart them per strategy (one-for-one, one-for-all, rest-for-one) with exponential
//!   backoff and jitter, escalating to their own supervisor past the restart intensity; the
//!   node guardian at the root.

pub mod hosting;
pub mod routing;
pub mod runtime;
pub mod trading;

mod error;

pub use error::Error;
pub use hosting::config::EntityConfig;
pub use hosting::consumer_group::{
    ConsumerConfig, ConsumerError, ConsumerGroup, ConsumerHandler, ConsumerMember,
    ConsumerMemberArgs, ConsumerMessage, GroupStats, MemberStats, Membership, partition_of,
};
pub use hosting::entity::Persistent;
pub use hosting::log_tail::{LogTail, TailWaker};
pub use hosting::projection::{
    Blame, Projection, ProjectionActor, ProjectionArgs, ProjectionConfig, ProjectionError,
    ProjectionMessage, ProjectionStats, rebuild,
};
pub use hosting::region::{ShardRegion, shard_of};
pub use hosting::saga_host::{Dispatcher, ProcessManager, SagaHost, SagaHostConfig};
pub use hosting::shard::ShardStats;
pub use runtime::backoff::{Backoff, Jitter};
pub use runtime::breaker::{BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker};
pub use runtime::dead_letters::{DeadLetter, DeadLetters, DeadLettersConfig};
pub use runtime::guardian::{GUARDIAN_NAME, Guardian};
pub use runtime::mailbox::{
    Envelope, Lane, MailboxConfig, MailboxReceiver, MailboxSender, MailboxStats,
    MailboxStatsHandle, Signal, mailbox,
};
pub use runtime::registry::{ActorInfo, ActorStatus, ActorTree, Registration, Registry};
pub use runtime::supervisor::{
    ChildContext, ChildSpec, ChildStats, ChildStatus, Progress, ProgressCheck, RestartTicket,
    SpawnFuture, Strategy, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage,
    SupervisorState, SupervisorStats,
};
