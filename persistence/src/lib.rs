//! Tradefloor persistence: the storage every persistent actor stands on.
//!
//! Generic over event types: it stores bytes with a name, a schema version, tags and two
//! times, and never knows the trading model. Two backends: SQLite (an embedded file, the
//! default; appends through one synchronous connection on a thread of its own, read-model
//! transactions through another ([`Journal::begin_read_models`]), reads through sqlx) and PostgreSQL (production, through sqlx).
//!
//! ```no_run
//! # async fn example() -> Result<(), tradefloor_persistence::Error> {
//! use tradefloor_persistence::{AppendRequest, Database, Journal, JournalConfig, NewEvent};
//!
//! let config = JournalConfig::default();
//! let database = Database::connect("sqlite:data/journal.db", &config).await?;
//! let journal = Journal::open(database, config).await?;
//! let outcome = journal
//!     .append(AppendRequest {
//!         stream: "account|alice".into(),
//!         kind: "account".into(),
//!         expected_sequence: 0,
//!         events: vec![NewEvent {
//!             name: "account.deposited".into(),
//!             schema_version: 1,
//!             payload: vec![1, 2, 3],
//!             tags: vec![],
//!             effective_at: None,
//!         }],
//!         fence: None,
//!     })
//!     .await?;
//! assert_eq!(outcome.last_sequence, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Guarantees, each tested by the conformance suite against both backends:
//! - an append is all-or-nothing and acknowledged only once committed;
//! - per stream, sequences run 1, 2, 3… without gaps; a stale writer gets
//!   [`Error::Conflict`], never an overwrite;
//! - global offsets run 1, 2, 3… without gaps, in commit order: a reader never skips an
//!   event that commits later with a lower offset;
//! - an append under a fence older than the latest recorded epoch is refused
//!   ([`Error::Fenced`]);
//! - a projection's read-model write and its offset commit in one transaction;
//! - every batch the journal's writer commits is published on the log bus
//!   ([`Journal::subscribe`]) exactly as a read returns it, in commit order; a subscriber that
//!   falls behind is told so and catches up from the database.
//!
//! Modules: [`journal`] (appends through [group commit](writer), reads), [`snapshot`],
//! [`offset`], [`codec`] (bincode 2, envelopes, upcasting), [`database`] (connection and
//! migrations), [`config`] (every limit), [`record`] (what goes in and comes out).

pub mod archive;
pub mod claim;
pub mod codec;
pub mod config;
pub mod database;
mod error;
pub mod journal;
pub mod offset;
pub mod record;
pub mod secret;
pub mod snapshot;
pub mod sql_value;
mod write_gate;
mod writer;

mod backend;
mod batch;
mod postgres;
mod read_model_writer;
mod sqlite;
mod sqlite_writer;
mod thread_priority;

pub use backend::Advance;
pub use claim::{ClaimMode, JournalClaim};
pub use codec::{EventCodec, Upcaster};
pub use config::JournalConfig;
pub use database::{Database, Transaction};
pub use error::Error;
pub use journal::{Journal, WriteTurn};
pub use offset::OffsetStore;
pub use read_model_writer::WriterTransaction;
pub use record::{
    AppendOutcome, AppendRequest, Decoded, Fence, Filter, LogBatch, NewEvent, Snapshot, StoredEvent,
};
pub use snapshot::SnapshotStore;
pub use sql_value::SqlValue;
