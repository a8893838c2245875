//! The dead-letter table: events a consumer of the log could not apply, parked so that it
//! moves on, kept with everything needed to look at them and to apply them again.
//!
//! A consumer parks an event when the event cannot be decoded, or when its handler failed
//! [`DeadLetterPolicy::attempts_max`] times (with backoff between attempts). The row holds the
//! consumer, the event's global offset (the two are its key), the stored event itself (payload
//! in hex, so the row outlives the journal's copy), the last error and the attempts. The row
//! is written in the same transaction that moves the consumer's offset past the event, so an
//! event is either applied, parked, or still ahead of the consumer: never lost.
//!
//! A consumer that needs the events of one key in order (an account's balances) names the key
//! of each event ([`order_key`](crate::hosting::projection::Projection::order_key)); once one
//! event of a key is parked, the key's later events are parked behind it (`held_by`) rather
//! than applied out of order. An operator asks for a retry (of one letter, or of a held key's
//! letters together, in offset order); the consumer applies what it can and deletes those
//! rows in the transaction that applies them. Deleting a row gives the event up.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tradefloor_persistence::codec::{from_hex, to_hex};
use tradefloor_persistence::{
    Database, Decoded, Error as StorageError, SqlValue, StoredEvent, Transaction,
};

use crate::runtime::backoff::Backoff;

/// The table, in the read models' database.
pub const DEAD_LETTERS_TABLE: &str = "tradefloor_dead_letters";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS tradefloor_dead_letters (\
    consumer TEXT NOT NULL, global_offset BIGINT NOT NULL, stream TEXT NOT NULL, \
    kind TEXT NOT NULL, sequence BIGINT NOT NULL, name TEXT NOT NULL, \
    schema_version BIGINT NOT NULL, payload TEXT NOT NULL, tags TEXT NOT NULL, \
    recorded_at BIGINT NOT NULL, effective_at BIGINT NOT NULL, error TEXT NOT NULL, \
    attempts BIGINT NOT NULL, parked_at BIGINT NOT NULL, order_key TEXT, held_by BIGINT, \
    retry_requested BIGINT NOT NULL, PRIMARY KEY (consumer, global_offset))";

const COLUMNS: &str = "consumer, global_offset, stream, kind, sequence, name, schema_version, \
    payload, tags, recorded_at, effective_at, error, attempts, parked_at, order_key, held_by, \
    retry_requested";

/// Most letters one listing returns.
pub const DEAD_LETTERS_PAGE_MAX: usize = 1_000;

/// When a consumer gives up on an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// Attempts at an event before it is parked (at least 1). An event that cannot be
    /// decoded is parked at its first failure.
    pub attempts_max: u32,
    /// The wait after the first failed attempt; it doubles with each further one.
    pub backoff_min: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
}

impl Default for DeadLetterPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 5,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl DeadLetterPolicy {
    /// The wait after failed attempt `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        Backoff {
            min: self.backoff_min,
            max: self.backoff_max,
            jitter: 0.0,
        }
        .ceiling(attempt)
    }
}

/// One parked event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The consumer that parked it.
    pub consumer: String,
    /// The event as it was stored.
    #[serde(skip)]
    pub event: StoredEvent,
    /// Why it was parked: the handler's last error, or the earlier letter holding its key.
    pub error: String,
    /// Failed attempts (0 for an event parked behind an earlier one of its key).
    pub attempts: u32,
    /// When it was parked, microseconds since the epoch.
    pub parked_at: i64,
    /// The key whose order the consumer keeps, if it keeps one.
    pub order_key: Option<String>,
    /// The offset of the parked event of the same key that held this one back, if any.
    pub held_by: Option<u64>,
    /// Whether a retry was asked for and not yet attempted.
    pub retry_requested: bool,
}

impl DeadLetter {
    /// The letter's id in the API: `{consumer}:{offset}`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.consumer, self.event.global_offset)
    }
}

/// Splits an id made by [`DeadLetter::id`] into consumer and offset.
pub fn parse_id(id: &str) -> Option<(&str, u64)> {
    let (consumer, offset) = id.rsplit_once(':')?;
    Some((consumer, offset.parse().ok()?)).filter(|(consumer, _)| !consumer.is_empty())
}

/// Which letters a listing returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LetterQuery {
    /// Only this consumer's; `None`: every consumer's.
    pub consumer: Option<String>,
    /// Letters after this `(consumer, offset)` in key order (the last id of the page before).
    pub after: Option<(String, u64)>,
    /// At most this many (1 to [`DEAD_LETTERS_PAGE_MAX`]).
    pub limit: usize,
}

/// Reads and writes the dead-letter table of one database.
#[derive(Clone, Debug)]
pub struct DeadLetterTable {
    database: Database,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

fn integer(value: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::InvalidRequest(format!("dead-letter row: {what} unreadable"))
}

/// A row as a letter.
fn letter_of(row: &[SqlValue]) -> Result<DeadLetter, StorageError> {
    let text = |index: usize, what: &str| {
        row.get(index)
            .and_then(SqlValue::text)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(what))
    };
    let number = |index: usize, what: &str| {
        row.get(index)
            .and_then(SqlValue::integer)
            .ok_or_else(|| corrupt(what))
    };
    let unsigned = |index: usize, what: &str| {
        number(index, what).and_then(|value| u64::try_from(value).map_err(|_| corrupt(what)))
    };
    let event = StoredEvent {
        global_offset: unsigned(1, "offset")?,
        stream: text(2, "stream")?,
        kind: text(3, "kind")?,
        sequence: unsigned(4, "sequence")?,
        name: text(5, "name")?,
        schema_version: u16::try_from(number(6, "version")?).map_err(|_| corrupt("version"))?,
        payload: from_hex(&text(7, "payload")?).ok_or_else(|| corrupt("payload"))?,
        tags: serde_json::from_str(&text(8, "tags")?).map_err(|_| corrupt("tags"))?,
        recorded_at: number(9, "recorded_at")?,
        effective_at: number(10, "effective_at")?,
        decoded: Decoded::default(),
    };
    Ok(DeadLetter {
        consumer: text(0, "consumer")?,
        event,
        error: text(11, "error")?,
        attempts: u32::try_from(number(12, "attempts")?).unwrap_or(u32::MAX),
        parked_at: number(13, "parked_at")?,
        order_key: row.get(14).and_then(SqlValue::text).map(str::to_owned),
        held_by: row
            .get(15)
            .and_then(SqlValue::integer)
            .and_then(|offset| u64::try_from(offset).ok()),
        retry_requested: number(16, "retry_requested")? != 0,
    })
}

impl DeadLetterTable {
    /// The table of `database` (the read models' database).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Creates the table if it does not exist.
    pub async fn create(&self) -> Result<(), StorageError> {
        self.database.execute(CREATE).await
    }

    /// Parks `letter` inside `transaction` (the one that moves its consumer past it).
    pub async fn park_in(
        transaction: &mut Transaction,
        letter: &DeadLetter,
    ) -> Result<(), StorageError> {
        let event = &letter.event;
        let values = [
            SqlValue::from(letter.consumer.as_str()),
            integer(event.global_offset),
            event.stream.as_str().into(),
            event.kind.as_str().into(),
            integer(event.sequence),
            event.name.as_str().into(),
            SqlValue::Integer(i64::from(event.schema_version)),
            to_hex(&event.payload).into(),
            serde_json::to_string(&event.tags)
                .expect("tags serialize")
                .into(),
            SqlValue::Integer(event.recorded_at),
            SqlValue::Integer(event.effective_at),
            letter.error.as_str().into(),
            SqlValue::Integer(i64::from(letter.attempts)),
            SqlValue::Integer(letter.parked_at),
            letter
                .order_key
                .clone()
                .map_or(SqlValue::NullText, SqlValue::Text),
            letter.held_by.map(integer).unwrap_or(SqlValue::Null),
            SqlValue::Integer(0),
        ];
        let placeholders: Vec<String> = (1..=values.len()).map(|n| format!("${n}")).collect();
        transaction
            .execute(
                &format!(
                    "INSERT INTO {DEAD_LETTERS_TABLE} ({COLUMNS}) VALUES ({})",
                    placeholders.join(", ")
                ),
                &values,
            )
            .await
    }

    /// A letter for `event` parked by `consumer` now.
    pub fn letter(consumer: &str, event: &StoredEvent, error: String, attempts: u32) -> DeadLetter {
        DeadLetter {
            consumer: consumer.to_owned(),
            event: event.clone(),
            error,
            attempts,
            parked_at: now_micros(),
            order_key: None,
            held_by: None,
            retry_requested: false,
        }
    }

    /// Letters in key order (consumer, offset), at most `query.limit`.
    pub async fn list(&self, query: &LetterQuery) -> Result<Vec<DeadLetter>, StorageError> {
        assert!(
            (1..=DEAD_LETTERS_PAGE_MAX).contains(&query.limit),
            "a bounded page"
        );
        let (consumer, after_offset) = query
            .after
            .clone()
            .map_or((String::new(), 0), |(consumer, offset)| (consumer, offset));
        let mut sql = format!(
            "SELECT {COLUMNS} FROM {DEAD_LETTERS_TABLE} \
             WHERE (consumer > $1 OR (consumer = $1 AND global_offset > $2))"
        );
        let mut values = vec![SqlValue::Text(consumer), integer(after_offset)];
        if let Some(only) = &query.consumer {
            sql.push_str(" AND consumer = $3");
            values.push(only.as_str().into());
        }
        sql.push_str(&format!(
            " ORDER BY consumer, global_offset LIMIT {}",
            query.limit
        ));
        let rows = self.database.fetch(&sql, &values).await?;
        rows.iter().map(|row| letter_of(row)).collect()
    }

    /// The letter `consumer` parked at `offset`, if there is one.
    pub async fn get(
        &self,
        consumer: &str,
        offset: u64,
    ) -> Result<Option<DeadLetter>, StorageError> {
        let rows = self
            .database
            .fetch(
                &format!(
                    "SELECT {COLUMNS} FROM {DEAD_LETTERS_TABLE} \
                     WHERE consumer = $1 AND global_offset = $2"
                ),
                &[consumer.into(), integer(offset)],
            )
            .await?;
        rows.first().map(|row| letter_of(row)).transpose()
    }

    /// Asks `consumer` to apply the letter at `offset` again, with every letter of its key
    /// if the consumer keeps the key's order (they go together, in offset order). Answers
    /// how many letters were marked (0: no such letter).
    pub async fn request_retry(&self, consumer: &str, offset: u64) -> Result<u64, StorageError> {
        let Some(letter) = self.get(consumer, offset).await? else {
            return Ok(0);
        };
        let mut transaction = self.database.begin().await?;
        let sql = format!(
            "UPDATE {DEAD_LETTERS_TABLE} SET retry_requested = 1 WHERE consumer = $1 AND \
             (global_offset = $2 OR (order_key IS NOT NULL AND order_key = $3)) \
             RETURNING global_offset"
        );
        let key = letter.order_key.map_or(SqlValue::NullText, SqlValue::Text);
        let rows = transaction
            .fetch(&sql, &[consumer.into(), integer(offset), key])
            .await?;
        transaction.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Gives the letter up: deletes it. Answers whether there was one.
    pub async fn delete(&self, consumer: &str, offset: u64) -> Result<bool, StorageError> {
        let mut transaction = self.database.begin().await?;
        let rows = transaction
            .fetch(
                &format!(
                    "DELETE FROM {DEAD_LETTERS_TABLE} WHERE consumer = $1 AND global_offset = $2 \
                     RETURNING global_offset"
                ),
                &[consumer.into(), integer(offset)],
            )
            .await?;
        transaction.commit().await?;
        Ok(!rows.is_empty())
    }

    /// How many letters each consumer has parked.
    pub async fn counts(&self) -> Result<Vec<(String, u64)>, StorageError> {
        let rows = self
            .database
            .fetch(
                &format!(
                    "SELECT consumer, COUNT(*) FROM {DEAD_LETTERS_TABLE} GROUP BY consumer \
                     ORDER BY consumer"
                ),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let consumer = row.first()?.text()?.to_owned();
                let count = u64::try_from(row.get(1)?.integer()?).ok()?;
                Some((consumer, count))
            })
            .collect())
    }

    /// What `consumer` has parked: how many letters, and each key it holds with the offset of
    /// the key's first letter.
    pub async fn held(&self, consumer: &str) -> Result<(u64, BTreeMap<String, u64>), StorageError> {
        let rows = self
            .database
            .fetch(
                &format!(
                    "SELECT order_key, MIN(global_offset), COUNT(*) FROM {DEAD_LETTERS_TABLE} \
                     WHERE consumer = $1 GROUP BY order_key"
                ),
                &[consumer.into()],
            )
            .await?;
        let unsigned = |value: Option<&SqlValue>| {
            value
                .and_then(SqlValue::integer)
                .and_then(|n| u64::try_from(n).ok())
        };
        let mut count = 0;
        let mut keys = BTreeMap::new();
        for row in &rows {
            count += unsigned(row.get(2)).unwrap_or(0);
            if let (Some(key), Some(first)) =
                (row.first().and_then(SqlValue::text), unsigned(row.get(1)))
            {
                keys.insert(key.to_owned(), first);
            }
        }
        Ok((count, keys))
    }

    /// `consumer`'s letters a retry was asked for, in offset order, at most `limit`.
    pub async fn retries(
        &self,
        consumer: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let rows = self
            .database
            .fetch(
                &format!(
                    "SELECT {COLUMNS} FROM {DEAD_LETTERS_TABLE} WHERE consumer = $1 AND \
                     retry_requested = 1 ORDER BY global_offset LIMIT {limit}"
                ),
                &[consumer.into()],
            )
            .await?;
        rows.iter().map(|row| letter_of(row)).collect()
    }

    /// Deletes the letter inside `transaction` (the one that applied it).
    pub async fn remove_in(
        transaction: &mut Transaction,
        consumer: &str,
        offset: u64,
    ) -> Result<(), StorageError> {
        transaction
            .execute(
                &format!(
                    "DELETE FROM {DEAD_LETTERS_TABLE} WHERE consumer = $1 AND global_offset = $2"
                ),
                &[consumer.into(), integer(offset)],
            )
            .await
    }

    /// Records a retry that failed again: the error, one more attempt, no retry pending.
    pub async fn retry_failed(
        &self,
        consumer: &str,
        offsets: &[u64],
        error: &str,
    ) -> Result<(), StorageError> {
        let mut transaction = self.database.begin().await?;
        for (index, offset) in offsets.iter().enumerate() {
            // The first failed; the rest of its key wait behind it.
            let (attempts, error) = if index == 0 {
                ("attempts + 1", error.to_owned())
            } else {
                ("attempts", format!("held behind offset {}", offsets[0]))
            };
            transaction
                .execute(
                    &format!(
                        "UPDATE {DEAD_LETTERS_TABLE} SET retry_requested = 0, \
                         attempts = {attempts}, error = $3 \
                         WHERE consumer = $1 AND global_offset = $2"
                    ),
                    &[consumer.into(), integer(*offset), error.into()],
                )
                .await?;
        }
        transaction.commit().await
    }

    /// Deletes every letter of `consumer`, inside `transaction` (a rebuild's reset).
    pub async fn clear_in(
        transaction: &mut Transaction,
        consumer: &str,
    ) -> Result<(), StorageError> {
        transaction
            .execute(
                &format!("DELETE FROM {DEAD_LETTERS_TABLE} WHERE consumer = $1"),
                &[consumer.into()],
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_consumer_and_the_offset() {
        assert_eq!(parse_id("trading.trades:42"), Some(("trading.trades", 42)));
        assert_eq!(parse_id("a:b:7"), Some(("a:b", 7)));
        assert_eq!(parse_id(":7"), None);
        assert_eq!(parse_id("trades"), None);
        assert_eq!(parse_id("trades:x"), None);
    }
}
