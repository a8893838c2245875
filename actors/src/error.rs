//! The one error type of the actor runtime, grouped by how a caller handles it.

use std::time::Duration;

/// Why a message was not delivered or a call did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// The recipient's mailbox (or the lane asked for) is full: shed load and retry later
    /// (HTTP 503 with Retry-After). Nothing was enqueued.
    #[error("mailbox of {actor} is full ({capacity} messages)")]
    Overloaded {
        /// The recipient's path.
        actor: String,
        /// The lane's capacity.
        capacity: usize,
    },
    /// No reply within the caller's deadline. The message may still be processed.
    #[error("{actor} did not answer within {after:?}")]
    Timeout {
        /// The recipient's path.
        actor: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// A circuit breaker is open: the call was not attempted. Retry after `retry_after`.
    #[error("circuit breaker {breaker} is open; retry in {retry_after:?}")]
    BreakerOpen {
        /// The breaker's name.
        breaker: String,
        /// Until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The recipient has stopped (or never existed); the message went to the dead letters.
    #[error("{actor} is stopped")]
    Stopped {
        /// The recipient's path.
        actor: String,
    },
    /// An actor is already registered at this path (a name clash, or a restarted actor
    /// registering before its previous incarnation deregistered): nothing was registered;
    /// pick another path or register once the previous holder has stopped.
    #[error("an actor is already registered at {path}")]
    PathTaken {
        /// The path asked for.
        path: String,
    },
    /// The call failed inside the callee; the message says how.
    #[error("{actor} failed: {reason}")]
    Failed {
        /// The callee's path.
        actor: String,
        /// What failed.
        reason: String,
    },
    /// The domain refused the command; nothing changed. The code says why (HTTP 4xx).
    #[error("refused: {0}")]
    Rejected(tradefloor_domain::Error),
    /// The journal did not make the events durable; nothing was applied and the entity
    /// recovers from its journal before its next command. Usually transient (HTTP 503).
    #[error("{actor} could not persist: {reason}")]
    Persistence {
        /// The entity's path.
        actor: String,
        /// What the journal said.
        reason: String,
    },
    /// This node no longer owns the entity's shard (a newer owner epoch is recorded): the
    /// shard stops; the cluster routes to the new owner.
    #[error("{actor} is fenced off: its shard has a newer owner")]
    Fenced {
        /// The entity's path.
        actor: String,
    },
    /// A supervisor's children failed more often than its restart intensity allows: it stopped
    /// them and failed itself, so its own supervisor decides (restart the subtree, or escalate
    /// further). At the node guardian the node's actors stop and the process should exit non-zero.
    #[error("supervisor {supervisor} gave up: more than {max_restarts} restarts within {within:?}")]
    RestartIntensityExceeded {
        /// The supervisor's path.
        supervisor: String,
        /// Its configured restart limit.
        max_restarts: u32,
        /// The sliding window the limit applies to.
        within: Duration,
    },
    /// A stream was asked to resume further back than the node replays: the client starts
    /// again from a snapshot (HTTP 410).
    #[error(
        "cannot resume after offset {after}: the log's head is {head}, and a stream resumes at most {behind_max} offsets back"
    )]
    ResumeTooOld {
        /// The offset asked for.
        after: u64,
        /// The log's head.
        head: u64,
        /// How far back a stream resumes.
        behind_max: u64,
    },
    /// An actor could not be started (its `pre_start` failed, its name was taken, or its
    /// configuration is invalid). Fix the cause; retrying the same start fails the same way.
    #[error("{actor} could not start: {reason}")]
    StartFailed {
        /// The path of the actor that did not start.
        actor: String,
        /// Why.
        reason: String,
    },
}
