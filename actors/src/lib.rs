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
//! - [`mailbox`](mod@mailbox): bounded mailboxes with a priority lane and a signal lane that bypasses the
//!   bound; overload answered at once or after waiting up to a deadline.
//! - [`breaker`]: circuit breakers (closed, open, one half-open probe, reset backoff).
//! - [`dead_letters`]: undelivered messages, counted, the latest kept.
//! - [`registry`]: the node's live actors and the actor tree served by `GET /v1/actors`.
//! - [`entity`], [`region`]: persistent entities hosting `domain` aggregates, inside shard
//!   actors, routed by a stable hash; the shard stop/start hand-off primitive. A region's
//!   journal writes and recoveries go through one circuit breaker; the region and its shards
//!   (with entity counts, not a row per entity) are in the registry, and undeliverable
//!   commands and orphaned replies are dead letters.
//! - [`config`]: the entity runtime's limits.
//! - [`saga_host`]: sagas as persistent process managers: their effects carried out, their
//!   deadlines ticked, resumed after a restart.
//! - [`log_tail`]: following the global log from the journal's log bus, and from the
//!   database to catch up; what projections, consumer groups and the book feed read with.
//! - [`projection`]: read models in SQL tables fed from the global log, each batch and its
//!   offset in one transaction (exactly once); rebuild from offset 0.
//! - [`consumer_group`]: members sharing the log's partitions (by a stable hash of the
//!   stream), each partition processed by one member in order, reassigned as members come
//!   and go (at least once).
//! - [`trading`]: the trading application: account, book and saga regions, the durable book
//!   feed, SQL read models, and the [`Exchange`](trading::Exchange) facade.
//! - [`supervisor`], [`backoff`], [`guardian`]: supervisors that start ordered children and
//!   restart them per strategy (one-for-one, one-for-all, rest-for-one) with exponential
//!   backoff and jitter, escalating to their own supervisor past the restart intensity; the
//!   node guardian at the root.

mod ask;
pub mod backoff;
pub mod breaker;
pub mod config;
pub mod consumer_group;
pub mod dead_letters;
pub mod entity;
mod error;
pub mod guardian;
pub mod log_tail;
pub mod mailbox;
pub mod projection;
pub mod region;
pub mod registry;
pub mod remote;
pub mod saga_host;
mod shard;
pub mod supervisor;
pub mod trading;

pub use backoff::{Backoff, Jitter};
pub use breaker::{BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker};
pub use config::EntityConfig;
pub use consumer_group::{
    ConsumerConfig, ConsumerError, ConsumerGroup, ConsumerHandler, ConsumerMember,
    ConsumerMemberArgs, ConsumerMessage, GroupStats, MemberStats, Membership, partition_of,
};
pub use dead_letters::{DeadLetter, DeadLetters, DeadLettersConfig};
pub use entity::Persistent;
pub use error::Error;
pub use guardian::{GUARDIAN_NAME, Guardian};
pub use log_tail::{LogTail, TailWaker};
pub use mailbox::{
    Envelope, Lane, MailboxConfig, MailboxReceiver, MailboxSender, MailboxStats,
    MailboxStatsHandle, Signal, mailbox,
};
pub use projection::{
    Projection, ProjectionActor, ProjectionArgs, ProjectionConfig, ProjectionError,
    ProjectionMessage, ProjectionStats, rebuild,
};
pub use region::{ShardRegion, shard_of};
pub use registry::{ActorInfo, ActorStatus, ActorTree, Registration, Registry};
pub use saga_host::{Dispatcher, ProcessManager, SagaHost, SagaHostConfig};
pub use shard::ShardStats;
pub use supervisor::{
    ChildContext, ChildSpec, ChildStats, ChildStatus, Progress, ProgressCheck, RestartTicket,
    SpawnFuture, Strategy, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage,
    SupervisorState, SupervisorStats,
};
