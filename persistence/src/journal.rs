//! The journal: append with optimistic concurrency and fencing through group commit; read a
//! stream, the global log, or a stream as of a valid time as known at a transaction time.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::archive::{
    self, ArchiveFiles, ArchiveProgress, ArchiveTotals, ArchivedRow, RecordedFile,
};
use crate::config::JournalConfig;
use crate::database::{Database, Transaction};
use crate::error::Error;
use crate::read_model_writer::{ReadModelWriter, WriterTransaction};
use crate::record::{AppendOutcome, AppendRequest, Filter, LogBatch, StoredEvent, TAG_SEPARATOR};
use crate::sqlite_writer::SqliteWriter;
use crate::writer::{self, Appender, PendingAppend};

/// A handle on the journal; cheap to clone. The group-commit writer stops when the last
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct Journal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    database: Database,
    config: JournalConfig,
    writer: mpsc::Sender<PendingAppend>,
    write_gate: Option<WriteGate>,
    /// Where read models live: beside the journal, or in a database of their own (see
    /// [`Journal::read_models`]).
    read_models: ReadModels,
    bus: broadcast::Sender<LogBatch>,
    /// One archive run at a time in this process.
    archive_run: tokio::sync::Mutex<()>,
}

/// The read models' database, the turns of its writers and, on SQLite, their write
/// connection.
#[derive(Debug)]
struct ReadModels {
    database: Database,
    write_gate: Option<WriteGate>,
    writer: Option<ReadModelWriter>,
}

impl ReadModels {
    fn open(
        database: Database,
        write_gate: Option<WriteGate>,
        config: &JournalConfig,
    ) -> Result<Self, Error> {
        let writer = match &database {
            Database::Sqlite(pool) => Some(ReadModelWriter::open(pool, config)?),
            Database::Postgres(_) => None,
        };
        Ok(Self {
            database,
            write_gate,
            writer,
        })
    }
}

/// The write gate of an SQLite database; none on PostgreSQL (no single write lock).
fn write_gate_of(database: &Database) -> Option<WriteGate> {
    match database {
        Database::Sqlite(_) => Some(WriteGate::default()),
        Database::Postgres(_) => None,
    }
}

use crate::write_gate::WriteGate;
pub use crate::write_gate::WriteTurn;

macro_rules! dispatch {
    ($database:expr, $operation:ident ( $($argument:expr),* )) => {
        match $database {
            Database::Sqlite(pool) => crate::sqlite::$operation(pool, $($argument),*).await,
            Database::Postgres(pool) => crate::postgres::$operation(pool, $($argument),*).await,
        }
    };
}
pub(crate) use dispatch;

impl Journal {
    /// Opens the journal on `database`: runs the migrations and starts the group-commit
    /// writer (on the current tokio runtime).
    pub async fn open(database: Database, config: JournalConfig) -> Result<Self, Error> {
        Self::open_in(database, None, config).await
    }

    /// [`Journal::open`], with the read models (their tables and offsets) in a database of
    /// their own, e.g. a second SQLite file: SQLite lets one transaction write to a file at a
    /// time, and read models that write beside the journal hold that lock for most of the time
    /// the journal's writer needs it (measured: 70 % of its time spent waiting for a turn).
    pub async fn open_with_read_models(
        database: Database,
        read_models: Database,
        config: JournalConfig,
    ) -> Result<Self, Error> {
        read_models.migrate().await?;
        Self::open_in(database, Some(read_models), config).await
    }

    async fn open_in(
        database: Database,
        read_models: Option<Database>,
        config: JournalConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        database.migrate().await?;
        let (sender, receiver) = mpsc::channel(config.queue_appends_max);
        let write_gate = write_gate_of(&database);
        let read_models = match read_models {
            Some(read_models) => {
                let gate = write_gate_of(&read_models);
                ReadModels::open(read_models, gate, &config)?
            }
            None => ReadModels::open(database.clone(), write_gate.clone(), &config)?,
        };
        let (bus, _) = broadcast::channel(config.bus_batches_max);
        let appender = match &database {
            Database::Sqlite(pool) => Appender::Sqlite(SqliteWriter::open(pool, &config)?),
            Database::Postgres(pool) => Appender::Postgres(pool.clone()),
        };
        tokio::spawn(writer::run(
            appender,
            config.clone(),
            receiver,
            write_gate.clone(),
            bus.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                database,
                config,
                writer: sender,
                write_gate,
                read_models,
                bus,
                archive_run: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The database of the read models (projections' tables and every consumer's offset):
    /// the journal's own, unless opened with [`Journal::open_with_read_models`].
    pub fn read_models(&self) -> &Database {
        &self.inner.read_models.database
    }

    /// A turn to write to [`Journal::read_models`] (see [`Journal::write_turn`]).
    async fn read_model_turn(&self) -> Option<WriteTurn> {
        match &self.inner.read_models.write_gate {
            Some(gate) => Some(gate.turn("background").await),
            None => None,
        }
    }

    /// Begins a transaction on [`Journal::read_models`], for a read model's batch and its
    /// offset. On SQLite it holds this process's turn to write (see [`Journal::write_turn`])
    /// until it ends, and runs on the read models' own write connection, on a thread of its
    /// own: its writes go there together with its next query or its commit, one hop for
    /// many statements (see [`crate::WriterTransaction`]). On PostgreSQL it is a pool's
    /// transaction.
    pub async fn begin_read_models(&self) -> Result<Transaction, Error> {
        let read_models = &self.inner.read_models;
        match &read_models.writer {
            Some(writer) => {
                let turn = self.read_model_turn().await;
                Ok(Transaction::Writer(WriterTransaction::new(
                    writer.clone(),
                    turn,
                )))
            }
            None => read_models.database.begin().await,
        }
    }

    /// Subscribes to the log bus: from now on, every batch this journal's writer commits,
    /// published once committed (before its appends are answered), in commit order, each
    /// event exactly as [`read_all`](Self::read_all) returns it.
    ///
    /// Only this handle's writer (and its clones') publishes here: other processes, and
    /// journals opened separately on the same database, append without publishing, so a
    /// batch whose first offset is not the one after the last event seen means events are
    /// missing, to be read from the database. The bus keeps
    /// [`bus_batches_max`](JournalConfig::bus_batches_max) batches: a subscriber further
    /// behind gets [`broadcast::error::RecvError::Lagged`] and must catch up from the
    /// database; the writer never waits for a subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<LogBatch> {
        self.inner.bus.subscribe()
    }

    /// On SQLite, waits for this process's turn to write to the journal's database and holds
    /// it until the returned turn is dropped; on PostgreSQL, `None` at once.
    ///
    /// SQLite lets one transaction write at a time, and a writer that finds the lock taken
    /// polls for it with sleeps that grow to tens of milliseconds (the busy handler), even if
    /// the lock is released a moment later. The journal's group-commit writer takes a turn
    /// for every batch; read models, offset commits and snapshots that write to the same
    /// database should take one around their write transaction, so the writers of this
    /// process queue in order and each starts as soon as the one before commits. Correctness
    /// never depends on it (SQLite's lock still decides); other processes, and journals
    /// opened separately on the same file, are not covered.
    pub async fn write_turn(&self) -> Option<WriteTurn> {
        match &self.inner.write_gate {
            Some(gate) => Some(gate.turn("background").await),
            None => None,
        }
    }

    /// The database underneath (for snapshot and offset stores and read models).
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// The limits in force.
    pub fn config(&self) -> &JournalConfig {
        &self.inner.config
    }

    /// Appends events to one stream after `expected_sequence`, under an optional fence.
    ///
    /// Returns once the events are durable (committed), or with [`Error::Conflict`],
    /// [`Error::Fenced`], [`Error::InvalidRequest`] or a database error, in which case
    /// nothing of this append was written. Waits while the writer's queue is full.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, Error> {
        self.validate(&request)?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .send(PendingAppend { request, reply })
            .await
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }

    fn validate(&self, request: &AppendRequest) -> Result<(), Error> {
        let limits = &self.inner.config;
        let invalid = |reason: String| Err(Error::InvalidRequest(reason));
        if request.stream.is_empty() || request.kind.is_empty() {
            return invalid("stream and kind must not be empty".to_owned());
        }
        if request.events.is_empty() || request.events.len() > limits.append_events_max {
            return invalid(format!(
                "an append to {} carries {} events; 1 to {} allowed",
                request.stream,
                request.events.len(),
                limits.append_events_max
            ));
        }
        for event in &request.events {
            if event.payload.len() > limits.payload_bytes_max {
                return invalid(format!(
                    "event {} for {} is {} bytes; at most {}",
                    event.name,
                    request.stream,
                    event.payload.len(),
                    limits.payload_bytes_max
                ));
            }
            if event.name.is_empty() {
                return invalid(format!("an event for {} has no name", request.stream));
            }
            if let Some(tag) = event
                .tags
                .iter()
                .find(|tag| tag.is_empty() || tag.contains(TAG_SEPARATOR))
            {
                return invalid(format!(
                    "tag {tag:?} is empty or contains {TAG_SEPARATOR:?}"
                ));
            }
        }
        Ok(())
    }

    /// Up to `limit` events of `stream` from `from_sequence` (inclusive), in order.
    pub async fn read_stream(
        &self,
        stream: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let limit = limit.min(self.inner.config.read_rows_max);
        let database = &self.inner.database;
        let hot = dispatch!(database, read_stream(stream, from_sequence, limit))?;
        // A stream's archived events are a prefix of it: none can come before a hot first
        // event at `from_sequence` (the common case: recovery after a snapshot).
        if hot
            .first()
            .is_some_and(|event| event.sequence == from_sequence)
        {
            return Ok(hot);
        }
        let rows = dispatch!(database, archived_of_stream(stream, from_sequence, limit))?;
        let cold = self.read_archived(rows).await?;
        Ok(archive::merge(hot, cold, limit, |event| {
            (0, event.sequence)
        }))
    }

    /// Up to `limit` events after `after_offset` (exclusive), in global order, filtered. Offsets
    /// are handed out in commit order, so a reader that has seen offset `n` never later finds
    /// a new event below `n`.
    pub async fn read_all(
        &self,
        after_offset: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<StoredEvent>, Error> {
        let limit = limit.min(self.inner.config.read_rows_max);
        let database = &self.inner.database;
        let hot = dispatch!(database, read_all(after_offset, limit, filter))?;
        let rows = dispatch!(database, archived_after(after_offset, limit, filter))?;
        let cold = self.read_archived(rows).await?;
        Ok(archive::merge(hot, cold, limit, |event| {
            (0, event.global_offset)
        }))
    }

    /// The events of `stream` valid at `valid_at` as known at `known_at` (both microseconds
    /// since the epoch), in valid-time order, at most `limit`.
    pub async fn read_stream_as_of(
        &self,
        stream: &str,
        valid_at: i64,
        known_at: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, Error> {
        let limit = limit.min(self.inner.config.read_rows_max);
        let database = &self.inner.database;
        let hot = dispatch!(
            database,
            read_stream_as_of(stream, valid_at, known_at, limit)
        )?;
        let rows = dispatch!(database, archived_as_of(stream, valid_at, known_at, limit))?;
        let cold = self.read_archived(rows).await?;
        Ok(archive::merge(hot, cold, limit, |event| {
            (event.effective_at, event.sequence)
        }))
    }

    /// The archived events `rows` name, from their files.
    async fn read_archived(&self, rows: Vec<ArchivedRow>) -> Result<Vec<StoredEvent>, Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let files = self.archive_files()?;
        tokio::task::spawn_blocking(move || files.read(&rows))
            .await
            .map_err(|error| Error::Archive(format!("the archive reader failed: {error}")))?
    }

    fn archive_files(&self) -> Result<ArchiveFiles, Error> {
        let config = &self.inner.config;
        let dir = config.archive_dir.clone().ok_or_else(|| {
            Error::Archive("events are archived but no archive directory is configured".into())
        })?;
        Ok(ArchiveFiles::new(dir, config.archive_frame_events_max))
    }

    /// Moves every event recorded before `recorded_before` (microseconds since the epoch)
    /// that its stream's snapshot covers, but its stream's last, out of the hot journal into
    /// archive files (see [`crate::archive`]), a file of at most `archive_file_events_max`
    /// events at a time, calling `progress` after each; every read still returns them. One
    /// run at a time per process; refused if no archive directory is configured.
    pub async fn archive(
        &self,
        recorded_before: i64,
        mut progress: impl FnMut(&ArchiveProgress),
    ) -> Result<ArchiveProgress, Error> {
        let files = self.archive_files()?;
        let _run = self.inner.archive_run.lock().await;
        let database = &self.inner.database;
        let file_events_max = self.inner.config.archive_file_events_max;
        let mut done = ArchiveProgress {
            last_offset: self.last_offset().await?,
            ..ArchiveProgress::default()
        };
        loop {
            let events = dispatch!(
                database,
                archive_candidates(done.through_offset, recorded_before, file_events_max)
            )?;
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                break;
            };
            let file_id = dispatch!(database, next_archive_file())?;
            let name = ArchiveFiles::name(file_id)?;
            let mut file = RecordedFile {
                file_id,
                name,
                first_offset: first.global_offset,
                last_offset: last.global_offset,
                events: events.len() as u64,
                bytes: 0,
                created_at: crate::writer::now_micros(),
            };
            let (writer, name, batch) = (files.clone(), file.name.clone(), events);
            let (written, events) = tokio::task::spawn_blocking(move || {
                writer.write(&name, &batch).map(|written| (written, batch))
            })
            .await
            .map_err(|error| Error::Archive(format!("the archive writer failed: {error}")))??;
            file.bytes = written.bytes;
            {
                let _turn = self.write_turn().await;
                dispatch!(database, record_archive(&file, &events, &written.frames))?;
            }
            done.files += 1;
            done.events += file.events;
            done.bytes += file.bytes;
            done.through_offset = file.last_offset;
            tracing::info!(file = %file.name, events = file.events, bytes = file.bytes,
                through_offset = done.through_offset, "events archived");
            progress(&done);
        }
        done.through_offset = done.through_offset.max(done.last_offset);
        Ok(done)
    }

    /// What the archive holds.
    pub async fn archive_totals(&self) -> Result<ArchiveTotals, Error> {
        let (files, events, bytes) = dispatch!(&self.inner.database, archive_totals())?;
        Ok(ArchiveTotals {
            files,
            events,
            bytes,
        })
    }

    /// The last sequence of `stream`; 0 if it has no events.
    pub async fn last_sequence(&self, stream: &str) -> Result<u64, Error> {
        dispatch!(&self.inner.database, last_sequence(stream))
    }

    /// The last global offset; 0 for an empty journal.
    pub async fn last_offset(&self) -> Result<u64, Error> {
        dispatch!(&self.inner.database, last_offset())
    }

    /// Records `epoch` as the fence's owner epoch (a new shard owner does this before
    /// writing). Refused with [`Error::Fenced`] if a newer epoch is already recorded.
    pub async fn claim_fence(&self, fence: &str, epoch: u64) -> Result<(), Error> {
        let in_force = dispatch!(&self.inner.database, claim_fence(fence, epoch))?;
        if in_force > epoch {
            return Err(Error::Fenced {
                stream: String::new(),
                fence: fence.to_owned(),
                epoch,
                current: in_force,
            });
        }
        Ok(())
    }

    /// The latest epoch recorded for a fence.
    pub async fn fence_epoch(&self, fence: &str) -> Result<Option<u64>, Error> {
        dispatch!(&self.inner.database, fence_epoch(fence))
    }
}
