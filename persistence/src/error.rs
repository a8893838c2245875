//! The one error type of the persistence crate, grouped by how a caller handles it.

use std::sync::Arc;

/// What can go wrong storing or loading events, snapshots and offsets.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Optimistic concurrency: the stream is not at the sequence the writer expected. Another
    /// writer got there first; the caller must reload the stream (an entity restarts).
    #[error("append to {stream} expected sequence {expected} but the stream is at {actual}")]
    Conflict {
        /// The stream.
        stream: String,
        /// The sequence the writer believed was last.
        expected: u64,
        /// The sequence that is last.
        actual: u64,
    },
    /// Writer fencing: a newer owner epoch is recorded for the fence, so this writer is stale
    /// and must stop writing (its shard has moved).
    #[error("append to {stream} fenced: epoch {epoch} of {fence} is older than {current}")]
    Fenced {
        /// The stream.
        stream: String,
        /// The fence (shard) key.
        fence: String,
        /// The writer's epoch.
        epoch: u64,
        /// The latest recorded epoch.
        current: u64,
    },
    /// A stored payload could not be decoded. The data or the code is wrong; do not retry.
    #[error("cannot decode {name} v{version} at sequence {sequence} of {stream}: {reason}")]
    Decode {
        /// The stream.
        stream: String,
        /// The event's sequence in its stream.
        sequence: u64,
        /// The stored event name.
        name: String,
        /// The stored schema version.
        version: u16,
        /// What failed.
        reason: String,
    },
    /// A stored event name (or name and version) this codec does not know.
    #[error("unknown event {name} v{version} at sequence {sequence} of {stream}")]
    UnknownEvent {
        /// The stream.
        stream: String,
        /// The event's sequence in its stream.
        sequence: u64,
        /// The stored event name.
        name: String,
        /// The stored schema version.
        version: u16,
    },
    /// A value could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The request breaks a limit or is malformed; fix the caller.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An offset commit would move a consumer's position backwards: the committer is stale.
    #[error(
        "offset of {consumer}/{partition} is {current}; refusing to move it back to {requested}"
    )]
    StaleOffset {
        /// The consumer (projection or group).
        consumer: String,
        /// The partition.
        partition: u32,
        /// The stored position.
        current: u64,
        /// The position asked for.
        requested: u64,
    },
    /// A holder of a consumer's lease tried to move its offset after a holder with a later
    /// lease epoch had: it is stale (the lease was taken over while it still ran) and must
    /// stop; nothing of its transaction was kept.
    #[error(
        "offset of {consumer}/{partition} was committed at lease epoch {stored_epoch}; \
         refusing a holder of epoch {epoch}"
    )]
    OffsetFenced {
        /// The consumer (projection or group).
        consumer: String,
        /// The partition.
        partition: u32,
        /// The refused holder's epoch.
        epoch: u64,
        /// The epoch of the holder that committed last.
        stored_epoch: u64,
    },
    /// Another node holds the journal in a way this one cannot share (see
    /// [`crate::claim::JournalClaim`]).
    #[error("{0}")]
    Claimed(String),
    /// The group-commit writer is gone (the journal is shutting down).
    #[error("the journal writer has stopped")]
    WriterStopped,
    /// The database failed; the operation did not happen. Usually transient: retry with
    /// backoff (behind a circuit breaker).
    #[error("database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    /// SQLite failed on the journal's write connection (see `sqlite_writer`); nothing of
    /// the batch was committed. Handled like [`Error::Database`].
    #[error("database error: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// An archive file could not be written or read, or is damaged (see `archive.rs`).
    #[error("archive: {0}")]
    Archive(String),
    /// Schema migration failed at start.
    #[error("migration failed: {0}")]
    Migration(#[source] Arc<sqlx::migrate::MigrateError>),
}

impl Error {
    /// Whether the database refused the statement's data (a constraint or a trigger on
    /// SQLite; an integrity, data or raised exception on PostgreSQL) rather than failed as a
    /// database: the same statement with other data would succeed.
    pub fn is_data_refused(&self) -> bool {
        // SQLite's primary result code for constraints, triggers' RAISE(ABORT) included.
        const SQLITE_CONSTRAINT: i32 = 19;
        let sqlite_constraint = |code: &str| {
            code.parse::<i32>()
                .is_ok_and(|code| code & 0xff == SQLITE_CONSTRAINT)
        };
        match self {
            Error::Database(error) => match error.as_ref() {
                sqlx::Error::Database(database) => database.code().is_some_and(|code| {
                    sqlite_constraint(&code)
                        || code.starts_with("23")
                        || code.starts_with("22")
                        || code == "P0001"
                }),
                _ => false,
            },
            Error::Sqlite(error) => matches!(
                error.as_ref(),
                rusqlite::Error::SqliteFailure(failure, _)
                    if failure.code == rusqlite::ErrorCode::ConstraintViolation
            ),
            _ => false,
        }
    }

    /// Whether the statement failed because a table it names does not exist (and for no
    /// other reason: a caller may create or rebuild what is missing, never what failed).
    pub fn is_missing_table(&self) -> bool {
        match self {
            Error::Database(error) => match error.as_ref() {
                sqlx::Error::Database(database) => {
                    // PostgreSQL's undefined_table; SQLite has no code of its own for it.
                    database.code().as_deref() == Some("42P01")
                        || database.message().starts_with("no such table")
                }
                _ => false,
            },
            Error::Sqlite(error) => error.to_string().starts_with("no such table"),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Database(Arc::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Error::Migration(Arc::new(error))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Error::Sqlite(Arc::new(error))
    }
}
