//! Tradefloor actors: the actor runtime on ractor, and (later) the trading actors built from
//! `tradefloor-domain`.
//!
//! ractor gives actors, links and supervision events; its mailboxes are unbounded and it
//! restarts nothing by itself. This crate adds what a serious actor platform needs on top:
//! bounded mailboxes with a priority lane, supervisors with restart strategies, intensity and
//! backoff, circuit breakers, dead letters and an inspectable actor tree; persistent entities,
//! shard regions, sagas, projections and consumer groups follow.

//! ## Modules
//!
//! - `error`: the crate's one [`Error`].
//! - `backoff`: exponential [`Backoff`] with jitter from a seeded, deterministic [`Jitter`].
//! - `supervisor`: [`Supervisor`], an actor that starts ordered [`ChildSpec`]s and restarts
//!   them per [`Strategy`] (one-for-one, one-for-all, rest-for-one) with backoff, escalating
//!   to its own supervisor when the restart intensity in [`SupervisionConfig`] is exceeded;
//!   children that opt in are also restarted when they stop making [`Progress`].
//! - `guardian`: the node's root supervisor, [`Guardian`], whose escalation stops the node.

mod backoff;
mod error;
mod guardian;
mod supervisor;

pub use backoff::{Backoff, Jitter};
pub use error::Error;
pub use guardian::{GUARDIAN_NAME, Guardian};
pub use supervisor::{
    ChildContext, ChildSpec, ChildStats, ChildStatus, Progress, ProgressCheck, RestartTicket,
    SpawnFuture, Strategy, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage,
    SupervisorState, SupervisorStats,
};
