//! The journal's SQL on PostgreSQL.
//!
//! Batches go in as arrays (`UNNEST`): one statement text whatever the batch size, so it is
//! parsed and planned once per connection, and one round trip per table.

crate::backend::backend_operations!(sqlx::Postgres);

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::batch::{Decided, EventRow, accept, decide};
use crate::record::{AppendOutcome, AppendRequest};

/// Commits a batch of appends in one transaction. Each append gets its own outcome:
/// a conflict or a fence refuses that append only. Tries [`append_batch_optimistic`]
/// first (no stream heads read); if its assumption fails, nothing of that attempt is
/// kept and [`append_batch_checked`] decides every append against the heads read.
pub(crate) async fn append_batch(
    pool: &Pool<Database>,
    batch: &[AppendRequest],
    recorded_at: i64,
) -> Result<Vec<Result<AppendOutcome, Error>>, Error> {
    match append_batch_optimistic(pool, batch, recorded_at).await? {
        Some(outcomes) => Ok(outcomes),
        None => append_batch_checked(pool, batch, recorded_at).await,
    }
}

/// The common path: assumes each stream's head is the sequence its first append in
/// the batch expects, so no head is read and the head row is locked and advanced by
/// the batch's event count in one statement. The assumption is verified in the
/// transaction before it commits: a head below the expected sequence by one batched
/// existence check of each expected predecessor `(stream, expected)`, a head above it
/// by the `(stream, sequence)` unique index on insert. Returns `None`, having rolled
/// back, if either fails or a fence refuses an append (its refusal would leave the
/// stream's head unverified).
async fn append_batch_optimistic(
    pool: &Pool<Database>,
    batch: &[AppendRequest],
    recorded_at: i64,
) -> Result<Option<Vec<Result<AppendOutcome, Error>>>, Error> {
    // The head each append found (`Ok`) or the head that refuses it (`Err`).
    let mut found: Vec<Result<u64, u64>> = Vec::with_capacity(batch.len());
    let mut heads: HashMap<&str, u64> = HashMap::with_capacity(batch.len());
    let mut predecessors: Vec<(&str, i64)> = Vec::with_capacity(batch.len());
    // Every expected sequence fits the database's integer: checked once, for the casts below.
    to_db(
        batch
            .iter()
            .map(|request| request.expected_sequence)
            .max()
            .unwrap_or(0),
    )?;
    let mut events_total: u64 = 0;
    for request in batch {
        let stream = request.stream.as_str();
        let head = *heads.entry(stream).or_insert_with(|| {
            if request.expected_sequence > 0 {
                predecessors.push((stream, request.expected_sequence as i64));
            }
            request.expected_sequence
        });
        if head != request.expected_sequence {
            found.push(Err(head));
            continue;
        }
        heads.insert(stream, head + request.events.len() as u64);
        events_total += request.events.len() as u64;
        found.push(Ok(head));
    }
    // Each stream's first append is accepted by construction.
    assert!(events_total > 0);

    let mut transaction = pool.begin().await?;
    let last_offset: i64 = sqlx::query_scalar(
        "UPDATE journal_head SET last_offset = last_offset + $1 WHERE id = 1 \
         RETURNING last_offset",
    )
    .bind(to_db(events_total)?)
    .fetch_one(&mut *transaction)
    .await?;
    let fences: BTreeSet<&str> = batch
        .iter()
        .filter_map(|request| request.fence.as_ref())
        .map(|fence| fence.key.as_str())
        .collect();
    let mut epochs = fence_epochs(&mut transaction, &fences).await?;
    let mut touched_fences: BTreeMap<&str, u64> = BTreeMap::new();
    for (request, _) in batch.iter().zip(&found).filter(|(_, found)| found.is_ok()) {
        let Some(fence) = &request.fence else {
            continue;
        };
        if fence.epoch < epochs.get(fence.key.as_str()).copied().unwrap_or(0) {
            transaction.rollback().await?;
            return Ok(None);
        }
        epochs.insert(fence.key.as_str(), fence.epoch);
        touched_fences.insert(fence.key.as_str(), fence.epoch);
    }
    if count_existing(&mut transaction, &predecessors).await? != predecessors.len() {
        transaction.rollback().await?;
        return Ok(None);
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(events_total as usize);
    let mut offset = last_offset - to_db(events_total)?;
    for (request, found) in batch.iter().zip(found) {
        let head = match found {
            Ok(head) => head,
            Err(actual) => {
                outcomes.push(Err(Error::Conflict {
                    stream: request.stream.clone(),
                    expected: request.expected_sequence,
                    actual,
                }));
                continue;
            }
        };
        outcomes.push(Ok(accept(
            request,
            head,
            &mut offset,
            &mut rows,
            recorded_at,
        )?));
    }
    assert_eq!(offset, last_offset);
    match insert_events(&mut transaction, &rows, recorded_at).await {
        Ok(()) => {}
        Err(Error::Database(error))
            if error
                .as_database_error()
                .is_some_and(|error| error.is_unique_violation()) =>
        {
            // A stream is past the sequence its writer expected: a stale writer.
            transaction.rollback().await?;
            return Ok(None);
        }
        Err(error) => return Err(error),
    }
    finish_batch(transaction, &rows, touched_fences).await?;
    Ok(Some(outcomes))
}

/// Writes the tags and fence epochs of a batch whose events are inserted, and commits.
async fn finish_batch(
    mut transaction: sqlx::Transaction<'_, Database>,
    rows: &[EventRow<'_>],
    touched_fences: BTreeMap<&str, u64>,
) -> Result<(), Error> {
    insert_tags(&mut transaction, rows).await?;
    for (fence, epoch) in touched_fences {
        sqlx::query(
            "INSERT INTO fences (fence, epoch) VALUES ($1, $2) \
             ON CONFLICT (fence) DO UPDATE SET epoch = excluded.epoch",
        )
        .bind(fence)
        .bind(to_db(epoch)?)
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Decides every append of a batch against the stream heads read. The head row is
/// locked first, so batches from every writer commit in offset order; the stream heads
/// are read after that lock, so no other writer can move them before this transaction
/// commits.
async fn append_batch_checked(
    pool: &Pool<Database>,
    batch: &[AppendRequest],
    recorded_at: i64,
) -> Result<Vec<Result<AppendOutcome, Error>>, Error> {
    let mut transaction = pool.begin().await?;
    let last_offset: i64 = sqlx::query_scalar(
        "UPDATE journal_head SET last_offset = last_offset WHERE id = 1 \
         RETURNING last_offset",
    )
    .fetch_one(&mut *transaction)
    .await?;
    let mut seen: HashSet<&str> = HashSet::with_capacity(batch.len());
    let streams: Vec<&str> = batch
        .iter()
        .map(|request| request.stream.as_str())
        .filter(|stream| seen.insert(stream))
        .collect();
    let heads = stream_heads(&mut transaction, &streams).await?;
    let fences: BTreeSet<&str> = batch
        .iter()
        .filter_map(|request| request.fence.as_ref())
        .map(|fence| fence.key.as_str())
        .collect();
    let epochs = fence_epochs(&mut transaction, &fences).await?;
    let Decided {
        outcomes,
        rows,
        touched_fences,
        last_offset: offset,
    } = decide(batch, heads, epochs, last_offset, recorded_at)?;
    if rows.is_empty() {
        transaction.rollback().await?;
        return Ok(outcomes);
    }
    insert_events(&mut transaction, &rows, recorded_at).await?;
    sqlx::query("UPDATE journal_head SET last_offset = $1 WHERE id = 1")
        .bind(offset)
        .execute(&mut *transaction)
        .await?;
    finish_batch(transaction, &rows, touched_fences).await?;
    Ok(outcomes)
}

/// The head of each of `streams` (distinct) that has events, from the events
/// themselves: the last sequence is the greatest on the `(stream, sequence)` index, one
/// index probe per stream.
async fn stream_heads<'a>(
    connection: &mut Connection,
    streams: &[&'a str],
) -> Result<HashMap<&'a str, u64>, Error> {
    let mut heads = HashMap::with_capacity(streams.len());
    let wanted: HashSet<&'a str> = streams.iter().copied().collect();
    for row in fetch_stream_heads(connection, streams).await? {
        let stream: String = row.try_get(0)?;
        let Some(head) = row.try_get::<Option<i64>, _>(1)? else {
            continue;
        };
        let key = wanted
            .get(stream.as_str())
            .expect("the database returns only streams asked for");
        heads.insert(*key, from_db(head, "sequence")?);
    }
    Ok(heads)
}

async fn fence_epochs<'a>(
    connection: &mut Connection,
    fences: &BTreeSet<&'a str>,
) -> Result<BTreeMap<&'a str, u64>, Error> {
    let mut epochs = BTreeMap::new();
    for fence in fences {
        let epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM fences WHERE fence = $1")
            .bind(*fence)
            .fetch_optional(&mut *connection)
            .await?;
        if let Some(epoch) = epoch {
            epochs.insert(*fence, from_db(epoch, "epoch")?);
        }
    }
    Ok(epochs)
}

/// The columns of a whole event row, as [`stored_event`] decodes them.
const EVENT_SELECT: &str = "global_offset, stream, kind, sequence, event_name, \
    schema_version, payload, tags, recorded_at, effective_at";

/// Decodes a row of [`EVENT_SELECT`], by position (no name lookups per column).
fn stored_event(row: &DatabaseRow) -> Result<StoredEvent, Error> {
    Ok(StoredEvent {
        global_offset: from_db(row.try_get(0)?, "offset")?,
        stream: row.try_get(1)?,
        kind: row.try_get(2)?,
        sequence: from_db(row.try_get(3)?, "sequence")?,
        name: row.try_get(4)?,
        schema_version: schema_version(row.try_get(5)?)?,
        payload: row.try_get(6)?,
        tags: split_tags(row.try_get(7)?),
        recorded_at: row.try_get(8)?,
        effective_at: row.try_get(9)?,
    })
}

/// The columns `read_stream` selects: not the stream, which the caller named.
const STREAM_EVENT_SELECT: &str = "global_offset, kind, sequence, event_name, \
    schema_version, payload, tags, recorded_at, effective_at";

/// Decodes a row of [`STREAM_EVENT_SELECT`] of `stream`.
fn stream_event(row: &DatabaseRow, stream: &str) -> Result<StoredEvent, Error> {
    Ok(StoredEvent {
        global_offset: from_db(row.try_get(0)?, "offset")?,
        stream: stream.to_owned(),
        kind: row.try_get(1)?,
        sequence: from_db(row.try_get(2)?, "sequence")?,
        name: row.try_get(3)?,
        schema_version: schema_version(row.try_get(4)?)?,
        payload: row.try_get(5)?,
        tags: split_tags(row.try_get(6)?),
        recorded_at: row.try_get(7)?,
        effective_at: row.try_get(8)?,
    })
}

/// `(stream, head)` rows for `streams`, head `NULL` for a stream without events.
async fn fetch_stream_heads(
    connection: &mut Connection,
    streams: &[&str],
) -> Result<Vec<DatabaseRow>, Error> {
    Ok(sqlx::query(
        "SELECT candidate.stream, (SELECT MAX(sequence) FROM events \
         WHERE events.stream = candidate.stream) FROM UNNEST($1::text[]) AS candidate(stream)",
    )
    .bind(streams)
    .fetch_all(&mut *connection)
    .await?)
}

/// How many of the `(stream, sequence)` pairs are stored: one index probe each.
///
/// Each pair is probed on its own (`LATERAL … LIMIT 1`): written as one semi-join, the
/// plan PostgreSQL cached for the statement while `events` was small hashed the pairs and
/// scanned the whole table, and kept doing so as it grew (5 ms per batch at 100 k events,
/// 40 % of the writer's time).
async fn count_existing(
    connection: &mut Connection,
    pairs: &[(&str, i64)],
) -> Result<usize, Error> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let (streams, sequences): (Vec<&str>, Vec<i64>) = pairs.iter().copied().unzip();
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM UNNEST($1::text[], $2::bigint[]) AS wanted(stream, sequence) \
         CROSS JOIN LATERAL (SELECT 1 FROM events \
         WHERE events.stream = wanted.stream AND events.sequence = wanted.sequence LIMIT 1) \
         AS found",
    )
    .bind(streams)
    .bind(sequences)
    .fetch_one(&mut *connection)
    .await?;
    Ok(from_db(count, "count")? as usize)
}

/// Inserts the event rows in one statement.
async fn insert_events(
    connection: &mut Connection,
    rows: &[EventRow<'_>],
    recorded_at: i64,
) -> Result<(), Error> {
    let mut offsets = Vec::with_capacity(rows.len());
    let mut streams = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut sequences = Vec::with_capacity(rows.len());
    let mut names = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut tags = Vec::with_capacity(rows.len());
    let mut effective = Vec::with_capacity(rows.len());
    for row in rows {
        let event = &row.request.events[row.event];
        offsets.push(row.offset);
        streams.push(row.request.stream.as_str());
        kinds.push(row.request.kind.as_str());
        sequences.push(row.sequence);
        names.push(event.name.as_str());
        versions.push(i32::from(event.schema_version));
        payloads.push(event.payload.as_slice());
        tags.push(row.stored_tags());
        effective.push(event.effective_at.unwrap_or(recorded_at));
    }
    sqlx::query(
        "INSERT INTO events (global_offset, stream, kind, sequence, event_name, schema_version, \
         payload, tags, recorded_at, effective_at) \
         SELECT global_offset, stream, kind, sequence, event_name, schema_version, payload, \
         tags, $10, effective_at FROM UNNEST($1::bigint[], $2::text[], $3::text[], \
         $4::bigint[], $5::text[], $6::integer[], $7::bytea[], $8::text[], $9::bigint[]) \
         AS row(global_offset, stream, kind, sequence, event_name, schema_version, payload, \
         tags, effective_at)",
    )
    .bind(offsets)
    .bind(streams)
    .bind(kinds)
    .bind(sequences)
    .bind(names)
    .bind(versions)
    .bind(payloads)
    .bind(tags)
    .bind(effective)
    .bind(recorded_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Inserts one `event_tags` row per tag of each event.
async fn insert_tags(connection: &mut Connection, rows: &[EventRow<'_>]) -> Result<(), Error> {
    let (mut tags, mut offsets) = (Vec::new(), Vec::new());
    for row in rows {
        for tag in &row.request.events[row.event].tags {
            tags.push(tag.as_str());
            offsets.push(row.offset);
        }
    }
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO event_tags (tag, global_offset) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[])",
    )
    .bind(tags)
    .bind(offsets)
    .execute(&mut *connection)
    .await?;
    Ok(())
}
