//! Group commit: one task per journal turns concurrent appends into few transactions.
//!
//! Appends queue in a bounded channel. The writer takes the first, then everything already
//! queued (and, if `batch_wait` is set, what arrives within it) up to `batch_events_max`
//! events, commits them in one transaction and answers each append on its own. While a
//! commit runs, new appends queue up and form the next batch, so batching grows with load
//! without adding latency when idle. Per-stream order is kept: appends to one stream are
//! applied in queue order, each checked against the head left by the one before.
//!
//! After a batch commits, and before its appends are answered, the writer publishes the events
//! it committed on the log bus ([`crate::Journal::subscribe`]), built from the requests and
//! their outcomes exactly as a read would return them. Publishing never waits: the bus is a
//! bounded broadcast channel that drops its oldest batch for a subscriber that fell behind
//! (who is told, and reads the database instead). With no subscriber nothing is built.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::JournalConfig;
use crate::error::Error;
use crate::record::{AppendOutcome, AppendRequest, Decoded, LogBatch, StoredEvent};
use crate::sqlite_writer::{Outcomes, SqliteWriter};

/// Most yields while cutting one batch: bounds the latency a steady trickle of appends can
/// add to a batch that never fills.
const BATCH_YIELDS_MAX: u32 = 64;

/// An append waiting for its batch.
pub(crate) struct PendingAppend {
    pub(crate) request: AppendRequest,
    pub(crate) reply: oneshot::Sender<Result<AppendOutcome, Error>>,
}

/// Where a batch is committed.
#[derive(Debug)]
pub(crate) enum Appender {
    /// The SQLite file's own write connection, on its thread.
    Sqlite(SqliteWriter),
    /// A PostgreSQL pool.
    Postgres(sqlx::PgPool),
}

impl Appender {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
        recorded_at: i64,
    ) -> (Vec<AppendRequest>, Outcomes) {
        match self {
            Appender::Sqlite(writer) => writer.append_batch(requests, recorded_at).await,
            Appender::Postgres(pool) => {
                let outcomes = crate::postgres::append_batch(pool, &requests, recorded_at).await;
                (requests, outcomes)
            }
        }
    }
}

/// Runs until every sender is dropped.
pub(crate) async fn run(
    appender: Appender,
    config: JournalConfig,
    mut inbox: mpsc::Receiver<PendingAppend>,
    write_gate: Option<crate::write_gate::WriteGate>,
    bus: broadcast::Sender<LogBatch>,
) {
    let mut carried: Option<PendingAppend> = None;
    let mut last_recorded_at = 0;
    loop {
        let first = match carried.take() {
            Some(pending) => pending,
            None => match inbox.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        // Our turn among this process's SQLite writers (see `Journal::write_turn`), taken
        // before the batch is cut: what arrives while another writer commits joins it.
        let waiting_since = Instant::now();
        let turn = match &write_gate {
            Some(gate) => Some(gate.turn("journal").await),
            None => None,
        };
        metrics::histogram!("tradefloor_journal_turn_wait_seconds")
            .record(waiting_since.elapsed().as_secs_f64());
        let mut events = first.request.events.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + config.batch_wait;
        // Let the appenders just answered (and woken) queue their next appends before the
        // batch is cut: yield, take what arrived, and yield again while each yield brings
        // more. Without this a batch is cut half-way through the wake-up of the appenders the
        // last commit answered, and the rest wait a whole commit more. Idle, it is one yield.
        let mut yields = 0;
        let mut arrived = true;
        while events < config.batch_events_max {
            let next = match inbox.try_recv() {
                Ok(next) => next,
                Err(mpsc::error::TryRecvError::Empty) if arrived && yields < BATCH_YIELDS_MAX => {
                    tokio::task::yield_now().await;
                    yields += 1;
                    arrived = false;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) if !config.batch_wait.is_zero() => {
                    match tokio::time::timeout_at(deadline, inbox.recv()).await {
                        Ok(Some(next)) => next,
                        _ => break,
                    }
                }
                Err(_) => break,
            };
            arrived = true;
            if events + next.request.events.len() > config.batch_events_max {
                carried = Some(next);
                break;
            }
            events += next.request.events.len();
            batch.push(next);
        }
        // Transaction time strictly increases from batch to batch within a writer, even if the
        // clock stalls or steps back, so "as known at" a batch's time excludes later batches.
        last_recorded_at = now_micros().max(last_recorded_at + 1);
        commit(&appender, &bus, batch, events, last_recorded_at).await;
        drop(turn);
    }
}

async fn commit(
    appender: &Appender,
    bus: &broadcast::Sender<LogBatch>,
    batch: Vec<PendingAppend>,
    events: usize,
    recorded_at: i64,
) {
    let started = Instant::now();
    let (requests, replies): (Vec<AppendRequest>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.request, pending.reply))
        .unzip();
    let (requests, result) = appender.append_batch(requests, recorded_at).await;
    let appends = requests.len();
    match result {
        Ok(outcomes) => {
            let elapsed = started.elapsed();
            // Published before the appends are answered, so an appender that reads the bus
            // after its append returns finds its events there.
            if bus.receiver_count() > 0 {
                let committed = committed_events(requests, &outcomes);
                if !committed.is_empty() {
                    // An error only means every subscriber went away meanwhile.
                    let _ = bus.send(committed);
                }
            }
            debug!(
                appends,
                events,
                elapsed_us = elapsed.as_micros() as u64,
                "batch committed"
            );
            metrics::histogram!("tradefloor_journal_batch_events").record(events as f64);
            metrics::histogram!("tradefloor_journal_commit_seconds").record(elapsed.as_secs_f64());
            metrics::counter!("tradefloor_journal_events_total").increment(events as u64);
            metrics::counter!("tradefloor_journal_appends_total").increment(appends as u64);
            metrics::counter!("tradefloor_journal_commits_total").increment(1);
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that gave up waiting is no reason to fail the others.
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            warn!(appends, events, %error, "batch failed; nothing of it was committed");
            metrics::counter!("tradefloor_journal_batches_failed_total").increment(1);
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// The events a committed batch wrote, in offset order, as `read_all` returns them: the
/// accepted appends' events at the offsets and sequences their outcomes report, stamped with
/// the batch's transaction time, valid time defaulting to it as the backends store it. The
/// requests are consumed, so payloads and tags move rather than being copied.
fn committed_events(
    requests: Vec<AppendRequest>,
    outcomes: &[Result<AppendOutcome, Error>],
) -> LogBatch {
    let mut committed = Vec::new();
    for (request, outcome) in requests.into_iter().zip(outcomes) {
        let Ok(outcome) = outcome else { continue };
        let AppendRequest {
            stream,
            kind,
            events,
            ..
        } = request;
        for (index, event) in (0u64..).zip(events) {
            committed.push(std::sync::Arc::new(StoredEvent {
                global_offset: outcome.first_offset + index,
                stream: stream.clone(),
                kind: kind.clone(),
                sequence: outcome.first_sequence + index,
                name: event.name,
                schema_version: event.schema_version,
                payload: event.payload,
                tags: event.tags,
                recorded_at: outcome.recorded_at,
                effective_at: event.effective_at.unwrap_or(outcome.recorded_at),
                decoded: Decoded::default(),
            }));
        }
    }
    // Appends are accepted in batch order with rising offsets, so this is a linear check;
    // sorting keeps the bus's order guarantee independent of that.
    committed.sort_by_key(|event| event.global_offset);
    committed.into()
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}
