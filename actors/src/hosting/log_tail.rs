//! Following the global log: from the journal's log bus while in step, from the database
//! when not.
//!
//! A [`LogTail`] yields batches of the events after a start offset that match a [`Filter`],
//! in offset order, each at most once. It has a *cursor*: every event at or below it has been
//! seen, matching or not, and every matching one yielded. The cursor moves over unfiltered
//! offsets, so "the next batch follows on" is judged on the whole log, not on the last
//! matching event.
//!
//! Where events come from:
//!
//! - **The database** ([`Journal::read_all`]) at start, after the tail lagged on the bus,
//!   after a gap, after [`seek`](LogTail::seek), and when asked to
//!   ([`check_database`](LogTail::check_database)). It reads the journal's last offset
//!   *first*, then the filtered events after the cursor. A read that returns fewer than the
//!   limit returned every matching event up to the head read before it (those were committed
//!   and offsets commit in order), so the cursor moves to that head (or to the last event
//!   read, if later) and the tail is in step. A full read moves the cursor to its last event
//!   and reads again.
//! - **The bus** ([`Journal::subscribe`], subscribed before the first read, so nothing
//!   committed after it is missed) while in step. Each batch is first trimmed of offsets at or
//!   below the cursor (a batch is published after it commits, so a database read can already
//!   have returned it): nothing is yielded twice. If what is left does not start right after
//!   the cursor, events are missing (another process appended, e.g. another node on
//!   PostgreSQL): the tail drops the batch and reads the database, which has it too
//!   (committed before it was published). A lag (the bus dropped batches this tail had not
//!   read) also sends it to the database. So no event is skipped.
//!
//! Events another process appends reach the bus of no one here: they are found at the next
//! gap, or by a [`check_database`](LogTail::check_database) (the [`TailWaker`] asks for one
//! when the bus has been quiet for its fallback interval).
//!
//! The tail never waits: [`next`](LogTail::next) returns what is available now (possibly
//! nothing). An actor is woken by a [`TailWaker`] when there may be more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::JoinHandle;
use tradefloor_persistence::{Error as StorageError, Filter, Journal, LogBatch, StoredEvent};

/// Follows the global log after an offset, filtered (see the [module](self)).
#[derive(Debug)]
pub struct LogTail {
    journal: Journal,
    filter: Filter,
    /// Most events per batch.
    limit: usize,
    /// Every event at or below it has been seen, and yielded if it matches.
    cursor: u64,
    bus: broadcast::Receiver<LogBatch>,
    /// A bus batch the limit cut, and the index of its first event not yet seen.
    pending: Option<(LogBatch, usize)>,
    /// No event after the cursor can be missed by taking the bus's batches in order: false at
    /// start, after a lag, a gap or a seek, and when a database check is asked for.
    in_step: bool,
    /// Why the next database read happens (the label of its metric).
    why: &'static str,
    database_reads: u64,
}

impl LogTail {
    /// A tail of `journal`'s events matching `filter` after offset `after`, in batches of at
    /// most `limit` events (and at most the journal's `read_rows_max`). It subscribes to the
    /// bus now; its first batch comes from the database.
    ///
    /// # Panics
    ///
    /// If `limit` is zero.
    pub fn new(journal: Journal, filter: Filter, after: u64, limit: usize) -> Self {
        assert!(limit > 0, "a log tail yields at least one event per batch");
        let limit = limit.min(journal.config().read_rows_max);
        Self {
            bus: journal.subscribe(),
            journal,
            filter,
            limit,
            cursor: after,
            pending: None,
            in_step: false,
            why: "start",
            database_reads: 0,
        }
    }

    /// Every event at or below this offset has been seen, and yielded if it matched.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Most events per batch.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many times the tail read the database.
    pub fn database_reads(&self) -> u64 {
        self.database_reads
    }

    /// Whether [`next`](Self::next) may have events right now without anything new being
    /// published: a batch is cut, the database is to be read, or the bus holds batches.
    pub fn has_more(&self) -> bool {
        self.pending.is_some() || !self.in_step || !self.bus.is_empty()
    }

    /// Reads the database at the next [`next`](Self::next): for events other processes
    /// appended, which no bus here carries.
    pub fn check_database(&mut self) {
        self.leave_step("check");
    }

    fn leave_step(&mut self, why: &'static str) {
        if self.in_step {
            self.in_step = false;
            self.why = why;
        }
    }

    /// Goes on after offset `after` instead (backwards to see events again, forwards to skip
    /// them), from the database.
    pub fn seek(&mut self, after: u64) {
        if after != self.cursor {
            self.cursor = after;
            self.pending = None;
            self.leave_step("seek");
        }
    }

    /// The matching events after the cursor available now, at most the limit, in offset
    /// order; empty if there are none. Never waits for new events. The events are shared with
    /// the bus's other subscribers, not copied.
    pub async fn next(&mut self) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
        let mut events = Vec::new();
        while events.len() < self.limit {
            if !self.in_step {
                if events.is_empty() {
                    return self.read_database().await;
                }
                // Yield what the bus gave first; the database is read next time.
                break;
            }
            let (batch, start) = match self.pending.take() {
                Some(pending) => pending,
                None => match self.bus.try_recv() {
                    Ok(batch) => (batch, 0),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => {
                        self.leave_step("lag");
                        continue;
                    }
                },
            };
            self.take(batch, start, &mut events);
        }
        Ok(events)
    }

    /// Moves the cursor over `batch` from `start`, collecting the matching events up to the
    /// limit (the rest stays pending); leaves the step at a gap.
    fn take(&mut self, batch: LogBatch, start: usize, events: &mut Vec<Arc<StoredEvent>>) {
        let seen = batch[start..].partition_point(|event| event.global_offset <= self.cursor);
        let start = start + seen;
        match batch.get(start) {
            None => return,
            Some(first) if first.global_offset != self.cursor + 1 => {
                // Events between the cursor and this batch are missing from the bus.
                self.leave_step("gap");
                return;
            }
            Some(_) => {}
        }
        for (index, event) in batch.iter().enumerate().skip(start) {
            if events.len() >= self.limit {
                self.pending = Some((batch.clone(), index));
                return;
            }
            if self.filter.matches(event) {
                events.push(event.clone());
            }
            self.cursor = event.global_offset;
        }
    }

    /// Reads the matching events after the cursor from the database (see the [module](self)
    /// on why the cursor may move to the head read first).
    async fn read_database(&mut self) -> Result<Vec<Arc<StoredEvent>>, StorageError> {
        let head = self.journal.last_offset().await?;
        let events = self
            .journal
            .read_all(self.cursor, self.limit, &self.filter)
            .await?;
        self.database_reads += 1;
        metrics::counter!("tradefloor_log_tail_database_reads_total", "why" => self.why)
            .increment(1);
        let last = events
            .last()
            .map_or(self.cursor, |event| event.global_offset);
        if events.len() < self.limit {
            self.cursor = self.cursor.max(head).max(last);
            self.in_step = true;
        } else {
            self.cursor = last;
        }
        Ok(events.into_iter().map(Arc::new).collect())
    }
}

/// The default shortest time between two wake-ups of a consumer by the bus (see
/// [`TailWaker::spawn`]).
pub const BATCH_INTERVAL_MIN_DEFAULT: Duration = Duration::from_millis(20);

/// The flags a [`TailWaker`] shares with its actor.
#[derive(Debug, Default)]
struct WakeSignals {
    /// A wake-up message is in the actor's mailbox: no need for another.
    queued: AtomicBool,
    /// The bus was quiet for the fallback interval, or someone asked: read the database.
    check_database: AtomicBool,
}

/// Wakes an actor whose [`LogTail`] may have events: at once when a batch is published on the
/// bus, and after `fallback` without one (asking for a database check, for what other
/// processes appended, and so that a consumer never stalls). At most one wake-up waits in the
/// actor's mailbox. The task stops when the waker is dropped (also when the actor is killed)
/// or the actor is gone.
#[derive(Debug)]
pub struct TailWaker {
    signals: Arc<WakeSignals>,
    task: JoinHandle<()>,
}

impl TailWaker {
    /// Starts waking `actor` with `message()` for the bus of `journal` (at most once every
    /// `pace`: what is published meanwhile is taken together), every `fallback` when quiet,
    /// and when `nudge` is notified (which also asks for a database check).
    pub fn spawn<M: ractor::Message>(
        journal: &Journal,
        actor: ActorRef<M>,
        fallback: Duration,
        pace: Duration,
        nudge: Option<Arc<Notify>>,
        message: fn() -> M,
    ) -> Self {
        let signals = Arc::new(WakeSignals::default());
        let mut bus = journal.subscribe();
        let shared = signals.clone();
        let task = tokio::spawn(async move {
            // Batches were published while the waker paused: wake for them without waiting.
            let mut published = false;
            loop {
                let check = if published {
                    false
                } else {
                    tokio::select! {
                        received = bus.recv() => match received {
                            Ok(_) | Err(RecvError::Lagged(_)) => false,
                            Err(RecvError::Closed) => return,
                        },
                        () = tokio::time::sleep(fallback) => true,
                        () = notified(nudge.as_deref()) => true,
                    }
                };
                if check {
                    shared.check_database.store(true, Ordering::Release);
                }
                if !shared.queued.swap(true, Ordering::AcqRel)
                    && actor.send_message(message()).is_err()
                {
                    return;
                }
                published = false;
                if !check && !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                    // The tail takes everything published meanwhile at its next wake-up: one
                    // wake-up for all of it.
                    match drain(&mut bus) {
                        Some(any) => published = any,
                        None => return,
                    }
                }
            }
        });
        Self { signals, task }
    }

    /// Called by the actor when it handles the wake-up message: lets the next one be sent,
    /// and tells `tail` to read the database if the wake-up asked for it.
    pub fn woken(&self, tail: &mut LogTail) {
        self.signals.queued.store(false, Ordering::Release);
        if self.signals.check_database.swap(false, Ordering::AcqRel) {
            tail.check_database();
        }
    }
}

/// Takes every batch waiting on `bus`: whether there was any; `None` once the bus is closed.
fn drain(bus: &mut broadcast::Receiver<LogBatch>) -> Option<bool> {
    let mut any = false;
    loop {
        match bus.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => any = true,
            Err(TryRecvError::Empty) => return Some(any),
            Err(TryRecvError::Closed) => return None,
        }
    }
}

impl Drop for TailWaker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for `nudge`, or forever without one.
async fn notified(nudge: Option<&Notify>) {
    match nudge {
        Some(nudge) => nudge.notified().await,
        None => std::future::pending().await,
    }
}
