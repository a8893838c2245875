//! The audit log: who did what. One row per command a caller sent (every request that may
//! change state) and per denial (no token, a token without the right, a token over its rate
//! limit), with the caller's principal, the request and its answer.
//!
//! The events themselves are the journal; this log says who asked for them and who was
//! refused. Rows are written after the answer, off the request's path: the endpoint hands
//! each to a bounded queue ([`AuditConfig::queue_max`]) and one task writes what is queued
//! in multi-row batches ([`AuditConfig::batch_max`]). A full queue (a flood of denials)
//! drops rows, counted by `tradefloor_audit_dropped_total`, rather than slow the node; a
//! crash loses at most the rows still queued (their commands are in the journal, by their
//! command ids).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tradefloor_persistence::Journal;

use super::projections::sql::{self, SqlValue};
use crate::error::Error;

/// The audit table.
pub const AUDIT_TABLE: &str = "trading_audit_log";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS trading_audit_log (\
     node TEXT NOT NULL, started_at BIGINT NOT NULL, seq BIGINT NOT NULL, \
     recorded_at BIGINT NOT NULL, principal TEXT NOT NULL, method TEXT NOT NULL, \
     path TEXT NOT NULL, status BIGINT NOT NULL, outcome TEXT NOT NULL, \
     PRIMARY KEY (node, started_at, seq))";

const COLUMNS: [&str; 9] = [
    "node",
    "started_at",
    "seq",
    "recorded_at",
    "principal",
    "method",
    "path",
    "status",
    "outcome",
];

/// Longest request path kept (a client chooses it).
pub const PATH_CHARS_MAX: usize = 256;

/// The audit log's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// Rows waiting to be written, at most; past it rows are dropped and counted.
    pub queue_max: usize,
    /// Rows written in one transaction, at most.
    pub batch_max: usize,
    /// Writes at most this often, so rows gather into batches (one transaction per row
    /// would cost more than the commands they record).
    pub flush_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            queue_max: 65_536,
            batch_max: 1_024,
            flush_interval: Duration::from_millis(100),
        }
    }
}

/// What became of an audited request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with success.
    Done,
    /// Refused for who the caller is: 401, 403, or 429 from its token's rate limit.
    Denied,
    /// Answered with another error (bad input, a business refusal, overload).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One audited request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it was answered, microseconds since the epoch.
    pub recorded_at: i64,
    /// Who asked: the token's name, `anonymous`, or `loopback` on a node without tokens.
    pub principal: String,
    /// The HTTP method.
    pub method: String,
    /// The request path, at most [`PATH_CHARS_MAX`] characters.
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// What became of it.
    pub outcome: Outcome,
}

impl AuditRecord {
    /// A record of a request answered now.
    pub fn now(principal: &str, method: &str, path: &str, status: u16, outcome: Outcome) -> Self {
        Self {
            recorded_at: now_micros(),
            principal: principal.to_owned(),
            method: method.to_owned(),
            path: path.chars().take(PATH_CHARS_MAX).collect(),
            status,
            outcome,
        }
    }
}

fn now_micros() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

/// The node's audit log: a bounded queue and the task writing it.
#[derive(Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditRecord>,
}

impl AuditLog {
    /// Creates the audit table if needed and starts the writer of `node`'s rows.
    pub async fn start(journal: Journal, node: &str, config: &AuditConfig) -> Result<Self, Error> {
        assert!(config.queue_max > 0 && config.batch_max > 0, "audit bounds");
        super::with_create_retries(|| async {
            journal
                .read_models()
                .execute(CREATE)
                .await
                .map_err(|error| storage(&error))
        })
        .await?;
        let (queue, rows) = mpsc::channel(config.queue_max);
        let writer = Writer {
            journal,
            node: node.to_owned(),
            started_at: now_micros(),
            seq: 0,
            batch_max: config.batch_max,
            flush_interval: config.flush_interval,
        };
        tokio::spawn(writer.run(rows));
        Ok(Self { queue })
    }

    /// Queues `record` for writing; drops it (counted) when the queue is full.
    pub fn record(&self, record: AuditRecord) {
        if self.queue.try_send(record).is_err() {
            metrics::counter!("tradefloor_audit_dropped_total").increment(1);
        }
    }

    /// The newest `limit` rows (of every node), newest first; only `principal`'s if given.
    pub async fn recent(
        journal: &Journal,
        principal: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, Error> {
        let (filter, values) = match principal {
            Some(principal) => ("WHERE principal = $1 ", vec![principal.into()]),
            None => ("", Vec::new()),
        };
        let sql = format!(
            "SELECT recorded_at, principal, method, path, status, outcome FROM {AUDIT_TABLE} \
             {filter}ORDER BY recorded_at DESC, seq DESC LIMIT {limit}"
        );
        let rows = journal
            .read_models()
            .fetch(&sql, &values)
            .await
            .map_err(|error| storage(&error))?;
        rows.into_iter().map(record_of).collect()
    }
}

fn record_of(row: Vec<SqlValue>) -> Result<AuditRecord, Error> {
    let corrupt = || storage(&"an audit row of unexpected shape");
    let [at, principal, method, path, status, outcome] =
        <[SqlValue; 6]>::try_from(row).map_err(|_| corrupt())?;
    let text = |value: &SqlValue| value.text().map(str::to_owned).ok_or_else(corrupt);
    Ok(AuditRecord {
        recorded_at: at.integer().ok_or_else(corrupt)?,
        principal: text(&principal)?,
        method: text(&method)?,
        path: text(&path)?,
        status: status
            .integer()
            .and_then(|status| u16::try_from(status).ok())
            .ok_or_else(corrupt)?,
        outcome: match outcome.text() {
            Some("done") => Outcome::Done,
            Some("denied") => Outcome::Denied,
            Some("failed") => Outcome::Failed,
            _ => return Err(corrupt()),
        },
    })
}

fn storage(error: &dyn std::fmt::Display) -> Error {
    super::projections::storage("audit log", error)
}

/// Writes queued rows in batches until every sender is gone.
struct Writer {
    journal: Journal,
    node: String,
    /// This process's start: with `seq`, the rows' key.
    started_at: i64,
    seq: i64,
    batch_max: usize,
    flush_interval: Duration,
}

impl Writer {
    async fn run(mut self, mut rows: mpsc::Receiver<AuditRecord>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        let mut written = tokio::time::Instant::now();
        while rows.recv_many(&mut batch, self.batch_max).await > 0 {
            // Let more rows gather until the interval since the last write has passed.
            tokio::time::sleep_until(written + self.flush_interval).await;
            while batch.len() < self.batch_max {
                match rows.try_recv() {
                    Ok(row) => batch.push(row),
                    Err(_) => break,
                }
            }
            written = tokio::time::Instant::now();
            if let Err(error) = self.write(&batch).await {
                metrics::counter!("tradefloor_audit_dropped_total").increment(batch.len() as u64);
                tracing::warn!(%error, rows = batch.len(), "audit rows not written");
            }
            batch.clear();
        }
    }

    async fn write(&mut self, batch: &[AuditRecord]) -> Result<(), tradefloor_persistence::Error> {
        let rows: Vec<Vec<SqlValue>> = batch
            .iter()
            .map(|record| {
                self.seq += 1;
                vec![
                    self.node.as_str().into(),
                    self.started_at.into(),
                    self.seq.into(),
                    record.recorded_at.into(),
                    record.principal.as_str().into(),
                    record.method.as_str().into(),
                    record.path.as_str().into(),
                    i64::from(record.status).into(),
                    record.outcome.as_str().into(),
                ]
            })
            .collect();
        let mut transaction = self.journal.begin_read_models().await?;
        sql::insert_rows(&mut transaction, AUDIT_TABLE, &COLUMNS, &rows, "").await?;
        transaction.commit().await
    }
}
