//! The log for consumers outside the node (`GET /v1/events`): pages of events after an
//! offset, filtered by kind, event name, stream prefix or symbol, waiting for the next events
//! when asked (long polling). Each page says where the next one starts, so a consumer resumes
//! from the offset it last processed without rereading what the filters skipped.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tradefloor_persistence::{Error as StorageError, Filter, Journal, OffsetStore, StoredEvent};

use super::{Exchange, event_json};
use crate::error::Error;

/// Most events a page returns.
pub const LOG_PAGE_EVENTS_MAX: usize = 1_000;
/// Most events a request scans for its filters (a filter that matches little returns an empty
/// page with `next_after` moved on rather than scanning the whole log).
pub const LOG_SCAN_EVENTS_MAX: usize = 10_000;
/// The longest a request waits for new events.
pub const LOG_WAIT_MAX: Duration = Duration::from_secs(30);

/// Which events, from where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Events after this global offset.
    pub after: u64,
    /// At most this many (1 to [`LOG_PAGE_EVENTS_MAX`]).
    pub limit: usize,
    /// Entity kinds kept (`account`, `order_book`, `order_saga`, `quotes`, `strategy`);
    /// empty: all.
    pub kinds: Vec<String>,
    /// Event names kept (`book.traded`…); empty: all.
    pub names: Vec<String>,
    /// Streams kept: those starting with this (`account|alice`, `order_book|`).
    pub stream_prefix: Option<String>,
    /// Events about this symbol only (see [`event_json::concerns_symbol`]).
    pub symbol: Option<String>,
    /// If nothing matches yet, how long to wait for new events (at most [`LOG_WAIT_MAX`]).
    pub wait: Duration,
}

/// A page of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogPage {
    /// The matching events, as [`event_json::envelope`] shows them, in offset order.
    pub events: Vec<Value>,
    /// Where the next page starts: the last offset this one scanned.
    pub next_after: u64,
}

impl LogQuery {
    fn keeps(&self, stored: &StoredEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&stored.kind))
            && (self.names.is_empty() || self.names.contains(&stored.name))
            && self
                .stream_prefix
                .as_ref()
                .is_none_or(|prefix| stored.stream.starts_with(prefix.as_str()))
    }

    /// The database filter narrowing the scan: one kind reads only its events.
    fn filter(&self) -> Filter {
        match self.kinds.as_slice() {
            [kind] => Filter::Kind(kind.clone()),
            _ => Filter::All,
        }
    }
}

/// The offset just before the first event of `journal` recorded at or after `at`
/// (microseconds): a binary search over the log, a read of one event per step.
pub(crate) async fn offset_before(journal: &Journal, at: i64) -> Result<u64, Error> {
    let head = journal.last_offset().await.map_err(storage)?;
    let (mut low, mut high) = (1, head + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        let page = journal
            .read_all(middle - 1, 1, &Filter::All)
            .await
            .map_err(storage)?;
        match page.first() {
            Some(event) if event.recorded_at < at => low = middle + 1,
            _ => high = middle,
        }
    }
    Ok(low - 1)
}

/// The offset-store key of subscription `name` (in the journal's database).
fn subscription_key(name: &str) -> String {
    format!("subscription:{name}")
}

fn storage(error: StorageError) -> Error {
    Error::Persistence {
        actor: "/events".to_owned(),
        reason: error.to_string(),
    }
}

/// The log as outside consumers read it: pages of events and subscriptions' offsets. It holds
/// the journal only, so a long-lived reader (an SSE connection) does not hold the
/// application.
#[derive(Clone, Debug)]
pub struct EventLog {
    journal: Journal,
}

impl Exchange {
    /// The log for outside consumers.
    pub fn event_log(&self) -> EventLog {
        EventLog {
            journal: self.journal.clone(),
        }
    }
}

impl EventLog {
    /// The offset subscription `name` committed: where its consumer resumes (0 if none).
    pub async fn subscription_offset(&self, name: &str) -> Result<u64, Error> {
        OffsetStore::new(self.journal.database().clone())
            .load(&subscription_key(name), 0)
            .await
            .map_err(storage)
    }

    /// Commits `offset` for subscription `name`, forward only: `false` (and nothing changes)
    /// if it is behind the offset committed already.
    pub async fn commit_subscription(&self, name: &str, offset: u64) -> Result<bool, Error> {
        match OffsetStore::new(self.journal.database().clone())
            .commit(&subscription_key(name), 0, offset)
            .await
        {
            Ok(()) => Ok(true),
            Err(StorageError::StaleOffset { .. }) => Ok(false),
            Err(error) => Err(storage(error)),
        }
    }

    /// Sets subscription `name`'s offset to `offset`, backwards too: an operator's replay
    /// (its consumer gets the events after it again).
    pub async fn replay_subscription(&self, name: &str, offset: u64) -> Result<(), Error> {
        let database = self.journal.database();
        let key = subscription_key(name);
        let mut transaction = database.begin().await.map_err(storage)?;
        OffsetStore::reset_in(&mut transaction, &key, 0)
            .await
            .map_err(storage)?;
        OffsetStore::commit_in(&mut transaction, &key, 0, offset)
            .await
            .map_err(storage)?;
        transaction.commit().await.map_err(storage)
    }

    /// The offset before the first event recorded at or after `at` (microseconds since the
    /// epoch): a subscription set to it replays from that time. The journal's head if every
    /// event is older. A binary search over offsets (gapless, and recorded in commit order),
    /// reading one event per step.
    pub async fn offset_before(&self, at: i64) -> Result<u64, Error> {
        offset_before(&self.journal, at).await
    }

    /// A page of the log after `query.after`, waiting up to `query.wait` while it would be
    /// empty.
    pub async fn log_page(&self, query: &LogQuery) -> Result<LogPage, Error> {
        assert!(
            (1..=LOG_PAGE_EVENTS_MAX).contains(&query.limit),
            "a bounded page"
        );
        // Subscribed before the first read, so a commit in between still wakes the wait.
        let mut bus = self.journal.subscribe();
        let deadline = tokio::time::Instant::now() + query.wait.min(LOG_WAIT_MAX);
        let mut query = query.clone();
        loop {
            let page = self.scan(&query).await?;
            if !page.events.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(page);
            }
            match tokio::time::timeout_at(deadline, bus.recv()).await {
                Err(_) | Ok(Err(RecvError::Closed)) => return Ok(page),
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
            }
            // The next scan starts where the empty one stopped.
            query.after = page.next_after;
        }
    }

    /// One bounded scan after `query.after`.
    async fn scan(&self, query: &LogQuery) -> Result<LogPage, Error> {
        let filter = query.filter();
        let mut events = Vec::new();
        let mut next_after = query.after;
        let mut scanned = 0;
        while events.len() < query.limit && scanned < LOG_SCAN_EVENTS_MAX {
            let batch = (LOG_SCAN_EVENTS_MAX - scanned).min(1_000);
            let page = self
                .journal
                .read_all(next_after, batch, &filter)
                .await
                .map_err(storage)?;
            let Some(last) = page.last().map(|event| event.global_offset) else {
                break;
            };
            for stored in &page {
                scanned += 1;
                next_after = stored.global_offset;
                if !query.keeps(stored) {
                    continue;
                }
                let envelope = event_json::envelope(stored);
                if query
                    .symbol
                    .as_ref()
                    .is_none_or(|symbol| event_json::concerns_symbol(&envelope, symbol))
                {
                    events.push(envelope);
                    if events.len() == query.limit {
                        break;
                    }
                }
            }
            if next_after < last || page.len() < batch {
                break;
            }
        }
        Ok(LogPage { events, next_after })
    }
}
