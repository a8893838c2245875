//! The one error type of the cluster crate, grouped by how a caller handles it.

use std::sync::Arc;

use crate::membership::Status;
use crate::time::Timestamp;

/// What can go wrong keeping membership and leases.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// This incarnation of the node is no longer a member of the cluster. The node must stop
    /// serving at once (its shards are being, or have been, given to other nodes, whose
    /// fenced epochs refuse its journal writes anyway) and may only come back by joining
    /// again, as a new incarnation.
    #[error("node {node_id} incarnation {incarnation} is no longer a member: {reason}")]
    Evicted {
        /// The node.
        node_id: String,
        /// The incarnation that was refused.
        incarnation: u64,
        /// Why it is out.
        reason: Eviction,
    },
    /// The member's status does not allow the operation (e.g. `mark_up` after `leave`): the
    /// caller's lifecycle is out of order. A bug in the caller; do not retry.
    #[error("node {node_id} incarnation {incarnation} is {status}; cannot {operation}")]
    InvalidTransition {
        /// The node.
        node_id: String,
        /// Its incarnation.
        incarnation: u64,
        /// Its status now.
        status: Status,
        /// What was asked.
        operation: &'static str,
    },
    /// Another holder has the lease until `expires_at`. The normal answer for every node but
    /// the leader: stay a follower and try again, not before `expires_at`.
    #[error("lease {lease} is held by {holder:?} (epoch {epoch}) until {expires_at}")]
    LeaseHeld {
        /// The lease.
        lease: String,
        /// Who holds it; `None` if its last holder released it at a time later than the
        /// caller's `now` (the caller's clock is behind the releaser's).
        holder: Option<String>,
        /// The holder's epoch.
        epoch: u64,
        /// When its term ends unless renewed.
        expires_at: Timestamp,
    },
    /// An argument or a configuration is malformed or out of range; fix the caller.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// This node's configuration differs from the cluster's in a setting every member must
    /// share; it may not join.
    #[error("{0}")]
    Misconfigured(String),
    /// The cluster endpoint (ractor_cluster server, gateway, a connection) failed.
    #[error("cluster remoting: {0}")]
    Remoting(String),
    /// A stored row could not be read back (an unknown status, a negative counter): the
    /// tables were changed by something other than this crate. Do not retry.
    #[error("corrupt cluster table: {0}")]
    Corrupt(String),
    /// The database failed; the operation did not happen or its outcome is unknown. Usually
    /// transient: retry with backoff. Every operation is safe to retry: a retried transition
    /// that had already happened is refused with a typed error or repeats harmlessly.
    #[error("database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
}

/// Why a node incarnation is no longer a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// It was declared down (silent past the failure timeout) or departed.
    Down,
    /// The same node id joined again with a newer incarnation (the process restarted).
    Superseded {
        /// The incarnation now registered.
        current: u64,
    },
    /// The node id is not in the table at all (never joined, or removed by an operator).
    Unknown,
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Eviction::Down => formatter.write_str("declared down"),
            Eviction::Superseded { current } => {
                write!(formatter, "superseded by incarnation {current}")
            }
            Eviction::Unknown => formatter.write_str("not in the membership table"),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Database(Arc::new(error))
    }
}

/// Converts an unsigned counter to the database's signed 64-bit integer.
pub(crate) fn to_db(value: u64, what: &str) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::InvalidRequest(format!("{what} {value} exceeds i64")))
}

/// Reads a stored non-negative counter back.
pub(crate) fn from_db(value: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("stored {what} {value} is negative")))
}
