//! Read-model transactions on SQLite: one synchronous write connection on a thread of its own.
//!
//! sqlx hands every statement of an SQLite transaction to its connection's worker thread and
//! back, a futex wake-up each way, and every commit too: profiled at 3 400 orders/s, that
//! thread took 19 % of the node's CPU, a quarter of it in those wake-ups. Here a
//! [`WriterTransaction`] buffers its writes and hands them to the thread only when it needs
//! an answer: a query (whose rows it waits for) or its commit. A projection's batch is then
//! one hop (its rows, its offset and the commit together), or one more per query it makes.
//! The thread prepares each statement once and reuses it.
//!
//! One transaction at a time: the caller holds the database's write turn (see
//! `Journal::write_turn`) from its first statement until its commit is queued, and a
//! transaction dropped unfinished is rolled back before the next one begins.
//!
//! Group commit: each read-model transaction runs in a savepoint of one SQLite transaction,
//! which the thread commits when it has nothing else queued (or [`GROUP_TRANSACTIONS_MAX`]
//! are waiting). The read models, the book feed and the consumer groups wake on the same
//! log batches, so their transactions arrive together: one commit (its WAL frames and its
//! fsync) serves them all instead of one each. A transaction that fails rolls back to its
//! savepoint and leaves the others in; each is answered only once the commit is durable.

use std::sync::mpsc as sync_mpsc;

use rusqlite::{Connection, OptionalExtension};
use sqlx::SqlitePool;
use tokio::sync::oneshot;

use crate::backend::{
    Advance, LOAD_OFFSET_EPOCH, from_db, offset_refusal, offset_statement, to_db,
};
use crate::config::JournalConfig;
use crate::error::Error;
use crate::journal::WriteTurn;
use crate::sql_value::SqlValue;
use crate::sqlite_writer::open_write_connection;
use crate::thread_priority::set_current_thread_nice;

/// Statements the connection keeps prepared: a multi-row insert is a statement per row count
/// (read models cut batches into power-of-two row counts, at most nine per statement), so read
/// models use about a hundred; a statement pushed out is parsed again at its next use.
const PREPARED_STATEMENTS_MAX: usize = 256;

/// Most read-model transactions committed together as one SQLite transaction.
const GROUP_TRANSACTIONS_MAX: usize = 64;

/// Rows read back.
pub(crate) type Rows = Vec<Vec<SqlValue>>;

/// One statement and its values.
#[derive(Debug)]
struct Statement {
    sql: String,
    values: Vec<SqlValue>,
}

/// A write buffered until the transaction next talks to the thread.
#[derive(Debug)]
enum Write {
    Statement(Statement),
    /// Moves a consumer's offset forward; refused with [`Error::StaleOffset`] if it would
    /// move back.
    Offset {
        consumer: String,
        partition: u32,
        /// Only as this says (`ADVANCE_OFFSET`); `None`: any position not ahead.
        advance: Option<Advance>,
        position: u64,
        now: i64,
    },
}

/// What the thread is asked to do.
enum Job {
    /// Begin (unless the transaction has), apply `writes`, run `query`, commit if asked.
    Run {
        begin: bool,
        writes: Vec<Write>,
        query: Option<Statement>,
        commit: bool,
        reply: oneshot::Sender<Result<Rows, Error>>,
    },
    /// Roll back the open transaction, if any.
    Rollback,
}

/// A handle on the writer thread; the thread ends when every handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct ReadModelWriter {
    /// Unbounded, but never long: one transaction talks to the thread at a time (it holds the
    /// write turn) and waits for each answer, so at most its job and a rollback are queued.
    jobs: sync_mpsc::Sender<Job>,
}

impl ReadModelWriter {
    /// Opens a write connection to the (migrated) SQLite file of `pool` and starts its thread.
    pub(crate) fn open(pool: &SqlitePool, config: &JournalConfig) -> Result<Self, Error> {
        let connection = open_write_connection(pool, config, PREPARED_STATEMENTS_MAX)?;
        let (jobs, inbox) = sync_mpsc::channel();
        let nice = config.read_models_writer_nice;
        std::thread::Builder::new()
            .name("read-models-sqlite".to_owned())
            .spawn(move || {
                set_current_thread_nice(nice, "read-models-sqlite");
                serve(&connection, &inbox);
            })
            .map_err(|error| Error::InvalidRequest(format!("cannot start a thread: {error}")))?;
        Ok(Self { jobs })
    }
}

/// The thread's transactions: one SQLite transaction at a time, holding the read-model
/// transactions committed into it (each in a savepoint of its own) until it commits them all.
struct Group<'c> {
    connection: &'c Connection,
    /// An SQLite transaction is open.
    open: bool,
    /// A read-model transaction is open, in its savepoint.
    member_open: bool,
    /// The read-model transactions released into the open SQLite transaction, waiting for its
    /// commit to be answered.
    committed: Vec<oneshot::Sender<Result<Rows, Error>>>,
}

fn serve(connection: &Connection, inbox: &sync_mpsc::Receiver<Job>) {
    let mut group = Group {
        connection,
        open: false,
        member_open: false,
        committed: Vec::new(),
    };
    loop {
        // Commit the group when the thread would otherwise wait, or when it is full: what
        // queued while the last commit ran joins the next one.
        let job = if group.member_open || !group.open {
            inbox.recv().ok()
        } else if group.committed.len() >= GROUP_TRANSACTIONS_MAX {
            group.commit();
            continue;
        } else {
            match inbox.try_recv() {
                Ok(job) => Some(job),
                Err(sync_mpsc::TryRecvError::Empty) => {
                    group.commit();
                    continue;
                }
                Err(sync_mpsc::TryRecvError::Disconnected) => None,
            }
        };
        let Some(job) = job else {
            group.commit();
            return;
        };
        group.handle(job);
    }
}

impl Group<'_> {
    fn handle(&mut self, job: Job) {
        match job {
            Job::Rollback => self.roll_back_member(),
            Job::Run {
                begin,
                writes,
                query,
                commit,
                reply,
            } => {
                if begin && self.member_open {
                    // Cannot happen (an unfinished transaction is rolled back when dropped,
                    // before its turn ends); if it did, its writes must not join this one.
                    tracing::warn!("read-model transaction left open; rolled back");
                    self.roll_back_member();
                }
                match self.run(begin, &writes, query.as_ref(), commit) {
                    Ok(_) if commit => self.committed.push(reply),
                    outcome => {
                        if outcome.is_err() {
                            self.roll_back_member();
                        }
                        // A caller that gave up waiting dropped its transaction: its
                        // rollback follows.
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
    }

    /// Runs one job of a read-model transaction; a commit releases its savepoint into the
    /// group (answered when the group commits).
    fn run(
        &mut self,
        begin: bool,
        writes: &[Write],
        query: Option<&Statement>,
        commit: bool,
    ) -> Result<Rows, Error> {
        if begin {
            if !self.open {
                self.connection.execute_batch("BEGIN IMMEDIATE")?;
                self.open = true;
            }
            self.connection.execute_batch("SAVEPOINT read_model")?;
            self.member_open = true;
        }
        assert!(
            self.member_open,
            "a read-model transaction writes only once begun"
        );
        for write in writes {
            apply(self.connection, write)?;
        }
        let rows = match query {
            Some(statement) => fetch(self.connection, statement)?,
            None => Vec::new(),
        };
        if commit {
            self.connection.execute_batch("RELEASE read_model")?;
            self.member_open = false;
        }
        Ok(rows)
    }

    /// Undoes the open read-model transaction, leaving the others of the group as they are.
    fn roll_back_member(&mut self) {
        if std::mem::take(&mut self.member_open) {
            let undone = self
                .connection
                .execute_batch("ROLLBACK TO read_model; RELEASE read_model");
            if let Err(error) = undone {
                tracing::debug!(%error, "read-model rollback");
            }
        }
        if self.open && self.connection.is_autocommit() {
            // SQLite rolled back the whole transaction by itself (after an I/O error, say):
            // the transactions released into it are lost, and told so now.
            self.open = false;
            let lost = Error::InvalidRequest(
                "the read models' SQLite transaction was rolled back by SQLite".to_owned(),
            );
            for reply in self.committed.drain(..) {
                let _ = reply.send(Err(lost.clone()));
            }
        }
    }

    /// Commits the open SQLite transaction and answers every read-model transaction in it.
    fn commit(&mut self) {
        debug_assert!(
            !self.member_open,
            "a group commits between its transactions"
        );
        if !std::mem::take(&mut self.open) {
            return;
        }
        let outcome = self.connection.execute_batch("COMMIT").map_err(Error::from);
        if outcome.is_err() && !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        metrics::histogram!("tradefloor_read_model_group_transactions")
            .record(self.committed.len() as f64);
        for reply in self.committed.drain(..) {
            let _ = reply.send(outcome.clone().map(|()| Vec::new()));
        }
    }
}

fn apply(connection: &Connection, write: &Write) -> Result<(), Error> {
    match write {
        Write::Statement(statement) => {
            connection
                .prepare_cached(&indexed_placeholders(&statement.sql))?
                .execute(rusqlite::params_from_iter(&statement.values))?;
        }
        Write::Offset {
            consumer,
            partition,
            advance,
            position,
            now,
        } => {
            let key = (consumer, i64::from(*partition));
            let to = to_db(*position)?;
            let mut statement =
                connection.prepare_cached(&indexed_placeholders(offset_statement(*advance)))?;
            let mut rows = match advance {
                Some(advance @ Advance { from: 1.., .. }) => statement.query(rusqlite::params![
                    key.0,
                    key.1,
                    to,
                    now,
                    to_db(advance.from)?,
                    to_db(advance.epoch)?
                ])?,
                Some(advance) => statement.query(rusqlite::params![
                    key.0,
                    key.1,
                    to,
                    now,
                    to_db(advance.epoch)?
                ])?,
                None => statement.query(rusqlite::params![key.0, key.1, to, now])?,
            };
            let moved = rows.next()?.is_some();
            drop(rows);
            if !moved {
                let stored: Option<(i64, i64)> = connection
                    .prepare_cached(&indexed_placeholders(LOAD_OFFSET_EPOCH))?
                    .query_row(rusqlite::params![key.0, key.1], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                let stored = stored
                    .map(|(at, epoch)| {
                        Ok::<_, Error>((from_db(at, "offset")?, from_db(epoch, "offset epoch")?))
                    })
                    .transpose()?;
                return Err(offset_refusal(
                    consumer, *partition, stored, *advance, *position,
                ));
            }
        }
    }
    Ok(())
}

fn fetch(connection: &Connection, statement: &Statement) -> Result<Rows, Error> {
    let mut prepared = connection.prepare_cached(&indexed_placeholders(&statement.sql))?;
    let columns = prepared.column_count();
    let mut rows = prepared.query(rusqlite::params_from_iter(&statement.values))?;
    let mut fetched = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns)
            .map(|index| SqlValue::from_sqlite(row.get_ref(index)?))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        fetched.push(values);
    }
    Ok(fetched)
}

/// `sql` with each `$n` placeholder written `?n`: SQLite numbers a `$n` parameter by its first
/// appearance, not by `n` (it is a name to SQLite), so `$2 … $1` would bind the wrong values;
/// `?n` is bound to the `n`th value. Read models put no `$` in literals.
fn indexed_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains('$') {
        std::borrow::Cow::Owned(sql.replace('$', "?"))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

/// A read-model transaction on the writer thread. Writes are buffered and sent with the
/// next query or the commit; dropped unfinished, it is rolled back.
#[derive(Debug)]
pub struct WriterTransaction {
    writer: ReadModelWriter,
    pending: Vec<Write>,
    /// The thread holds an open transaction for this one.
    begun: bool,
    /// This process's turn at the database's write lock, until the commit is queued.
    turn: Option<WriteTurn>,
}

impl WriterTransaction {
    pub(crate) fn new(writer: ReadModelWriter, turn: Option<WriteTurn>) -> Self {
        Self {
            writer,
            pending: Vec::new(),
            begun: false,
            turn,
        }
    }

    /// Buffers a statement.
    pub(crate) fn execute(&mut self, sql: &str, values: &[SqlValue]) {
        self.pending.push(Write::Statement(Statement {
            sql: sql.to_owned(),
            values: values.to_vec(),
        }));
    }

    /// Buffers an offset commit (only as `advance` says, if given).
    pub(crate) fn commit_offset(
        &mut self,
        consumer: &str,
        partition: u32,
        advance: Option<Advance>,
        position: u64,
    ) {
        self.pending.push(Write::Offset {
            consumer: consumer.to_owned(),
            partition,
            advance,
            position,
            now: crate::writer::now_micros(),
        });
    }

    /// Applies the buffered writes, then runs `sql` and returns its rows.
    pub(crate) async fn fetch(&mut self, sql: &str, values: &[SqlValue]) -> Result<Rows, Error> {
        let query = Statement {
            sql: sql.to_owned(),
            values: values.to_vec(),
        };
        self.send(Some(query), false).await
    }

    /// Applies the buffered writes and commits. The thread may commit this transaction
    /// together with the ones queued behind it (each in a savepoint of its own, so one that
    /// fails undoes only itself): the turn is given up once the commit is queued, so the next
    /// transaction can queue its work meanwhile, and the answer comes once all are durable.
    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        if !self.begun && self.pending.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Run {
            begin: !self.begun,
            writes: std::mem::take(&mut self.pending),
            query: None,
            commit: true,
            reply,
        };
        // From here the thread finishes the transaction either way: nothing to roll back
        // when this is dropped (a rollback sent later would undo the next transaction).
        self.begun = false;
        let sent = self.writer.jobs.send(job);
        drop(self.turn.take());
        sent.map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?.map(drop)
    }

    async fn send(&mut self, query: Option<Statement>, commit: bool) -> Result<Rows, Error> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Run {
            begin: !self.begun,
            writes: std::mem::take(&mut self.pending),
            query,
            commit,
            reply,
        };
        self.writer
            .jobs
            .send(job)
            .map_err(|_| Error::WriterStopped)?;
        // Begun until the thread says otherwise: if this wait is abandoned, the drop rolls
        // back whatever the thread did.
        self.begun = true;
        let outcome = answer.await.map_err(|_| Error::WriterStopped)?;
        // After an error the thread rolled back; after a commit nothing is open.
        self.begun = outcome.is_ok() && !commit;
        outcome
    }
}

impl Drop for WriterTransaction {
    fn drop(&mut self) {
        if self.begun {
            // Queued before the turn (dropped after this) lets the next transaction in.
            let _ = self.writer.jobs.send(Job::Rollback);
        }
    }
}
