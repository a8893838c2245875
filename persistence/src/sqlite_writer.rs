//! The SQLite journal's appends: one synchronous connection on a thread of its own.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every statement (and every
//! row) over to it and back, a futex wake-up each way: profiled at 2 000 orders/s, its
//! threads took 38 % of the node's CPU, two thirds of that in the kernel switching threads,
//! for 8 % of actual SQLite work. Here the group-commit writer hands the thread a whole batch
//! and gets the outcomes back: one hop per batch. The thread decides the batch under
//! `BEGIN IMMEDIATE` (SQLite's write lock, so no other writer moves a stream head or a fence
//! meanwhile) with statements prepared once and reused, and commits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc as sync_mpsc;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use sqlx::SqlitePool;
use tokio::sync::oneshot;

use crate::backend::{from_db, to_db};
use crate::batch::{Decided, EventRow, decide};
use crate::config::JournalConfig;
use crate::error::Error;
use crate::record::{AppendOutcome, AppendRequest};
use crate::thread_priority::set_current_thread_nice;

/// Statements a connection keeps prepared: the dozen the writer uses, with room to spare.
const PREPARED_STATEMENTS_MAX: usize = 32;

/// The outcome of one append of a batch.
pub(crate) type Outcomes = Result<Vec<Result<AppendOutcome, Error>>, Error>;

/// A batch for the thread, and where its outcomes go.
struct Job {
    requests: Vec<AppendRequest>,
    recorded_at: i64,
    reply: oneshot::Sender<(Vec<AppendRequest>, Outcomes)>,
}

/// A handle on the writer thread; the thread ends when the handle is dropped.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    jobs: sync_mpsc::SyncSender<Job>,
    /// The journal's pool (its reads): once it is closed, the journal writes nothing more.
    pool: SqlitePool,
}

impl SqliteWriter {
    /// Opens a write connection to the (migrated) journal file of `pool` and starts its
    /// thread.
    pub(crate) fn open(pool: &SqlitePool, config: &JournalConfig) -> Result<Self, Error> {
        let connection = open_write_connection(pool, config, PREPARED_STATEMENTS_MAX)?;
        // One batch at a time: the group-commit writer waits for each before cutting the next.
        let (jobs, inbox) = sync_mpsc::sync_channel(1);
        let nice = config.journal_writer_nice;
        std::thread::Builder::new()
            .name("journal-sqlite".to_owned())
            .spawn(move || {
                set_current_thread_nice(nice, "journal-sqlite");
                serve(connection, inbox);
            })
            .map_err(|error| Error::InvalidRequest(format!("cannot start a thread: {error}")))?;
        Ok(Self {
            jobs,
            pool: pool.clone(),
        })
    }

    /// Commits `requests` in one transaction; gives them back with an outcome each (a conflict
    /// or a fence refuses that append only), or the error that committed nothing.
    pub(crate) async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
        recorded_at: i64,
    ) -> (Vec<AppendRequest>, Outcomes) {
        if self.pool.is_closed() {
            return (requests, Err(sqlx::Error::PoolClosed.into()));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            requests,
            recorded_at,
            reply,
        };
        if let Err(sync_mpsc::SendError(job)) = self.jobs.send(job) {
            return (job.requests, Err(Error::WriterStopped));
        }
        answer
            .await
            .unwrap_or_else(|_| (Vec::new(), Err(Error::WriterStopped)))
    }
}

/// A synchronous connection to the (migrated) SQLite file of `pool`, in WAL mode, keeping up to
/// `prepared_max` statements prepared: a writer thread's own.
pub(crate) fn open_write_connection(
    pool: &SqlitePool,
    config: &JournalConfig,
    prepared_max: usize,
) -> Result<Connection, Error> {
    let connection = Connection::open_with_flags(
        pool.connect_options().get_filename(),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = if config.sqlite_synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    connection.pragma_update(None, "synchronous", synchronous)?;
    connection.busy_timeout(config.sqlite_busy_timeout)?;
    connection.set_prepared_statement_cache_capacity(prepared_max);
    Ok(connection)
}

fn serve(mut connection: Connection, inbox: sync_mpsc::Receiver<Job>) {
    for job in inbox {
        let outcomes = append_batch(&mut connection, &job.requests, job.recorded_at);
        // The group-commit writer always waits for its answer; if it is gone, so is the journal.
        let _ = job.reply.send((job.requests, outcomes));
    }
}

/// Decides `batch` against the heads and epochs read under the write lock, inserts the
/// accepted events and their tags, moves the journal's head and commits.
fn append_batch(
    connection: &mut Connection,
    batch: &[AppendRequest],
    recorded_at: i64,
) -> Outcomes {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let last_offset: i64 = transaction
        .prepare_cached("SELECT last_offset FROM journal_head WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    let heads = stream_heads(&transaction, batch)?;
    let epochs = fence_epochs(&transaction, batch)?;
    let Decided {
        outcomes,
        rows,
        touched_fences,
        last_offset,
    } = decide(batch, heads, epochs, last_offset, recorded_at)?;
    if rows.is_empty() {
        // Nothing accepted: the transaction rolls back when dropped.
        return Ok(outcomes);
    }
    insert_rows(&transaction, &rows, recorded_at)?;
    transaction
        .prepare_cached("UPDATE journal_head SET last_offset = ?1 WHERE id = 1")?
        .execute([last_offset])?;
    let mut record_fence = transaction.prepare_cached(
        "INSERT INTO fences (fence, epoch) VALUES (?1, ?2) \
         ON CONFLICT (fence) DO UPDATE SET epoch = excluded.epoch",
    )?;
    for (fence, epoch) in touched_fences {
        record_fence.execute(params![fence, to_db(epoch)?])?;
    }
    drop(record_fence);
    transaction.commit()?;
    Ok(outcomes)
}

/// The head of each stream of `batch` that has events: its greatest sequence on the
/// `(stream, sequence)` index, one probe per distinct stream.
fn stream_heads<'a>(
    connection: &Connection,
    batch: &'a [AppendRequest],
) -> Result<HashMap<&'a str, u64>, Error> {
    let mut probe =
        connection.prepare_cached("SELECT MAX(sequence) FROM events WHERE stream = ?1")?;
    let mut heads = HashMap::with_capacity(batch.len());
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    for request in batch {
        let stream = request.stream.as_str();
        if !seen.insert(stream) {
            continue;
        }
        let head: Option<i64> = probe.query_row([stream], |row| row.get(0))?;
        if let Some(head) = head {
            heads.insert(stream, from_db(head, "sequence")?);
        }
    }
    Ok(heads)
}

/// The epoch recorded for each fence `batch` appends under.
fn fence_epochs<'a>(
    connection: &Connection,
    batch: &'a [AppendRequest],
) -> Result<BTreeMap<&'a str, u64>, Error> {
    let fences: BTreeSet<&str> = batch
        .iter()
        .filter_map(|request| request.fence.as_ref())
        .map(|fence| fence.key.as_str())
        .collect();
    let mut epochs = BTreeMap::new();
    if fences.is_empty() {
        return Ok(epochs);
    }
    let mut probe = connection.prepare_cached("SELECT epoch FROM fences WHERE fence = ?1")?;
    for fence in fences {
        let mut rows = probe.query([fence])?;
        if let Some(row) = rows.next()? {
            epochs.insert(fence, from_db(row.get(0)?, "epoch")?);
        }
    }
    Ok(epochs)
}

/// Inserts the event rows and one `event_tags` row per tag, a prepared statement each.
fn insert_rows(
    connection: &Connection,
    rows: &[EventRow<'_>],
    recorded_at: i64,
) -> Result<(), Error> {
    let mut insert_event = connection.prepare_cached(
        "INSERT INTO events (global_offset, stream, kind, sequence, event_name, schema_version, \
         payload, tags, recorded_at, effective_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut insert_tag =
        connection.prepare_cached("INSERT INTO event_tags (tag, global_offset) VALUES (?1, ?2)")?;
    for row in rows {
        let event = &row.request.events[row.event];
        insert_event.execute(params![
            row.offset,
            row.request.stream,
            row.request.kind,
            row.sequence,
            event.name,
            i32::from(event.schema_version),
            event.payload,
            row.stored_tags(),
            recorded_at,
            event.effective_at.unwrap_or(recorded_at),
        ])?;
        for tag in &event.tags {
            insert_tag.execute(params![tag, row.offset])?;
        }
    }
    Ok(())
}
