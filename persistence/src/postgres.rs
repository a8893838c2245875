//! The journal's SQL on PostgreSQL.
//!
//! Batches go in as arrays (`UNNEST`): one statement text whatever the batch size, so it is
//! parsed and planned once per connection, and one round trip per table.

crate::backend::backend_operations!(sqlx::Postgres);

/// The columns of a whole event row, as [`stored_event`] decodes them.
const EVENT_SELECT: &str = EVENT_COLUMNS;

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
         WHERE EXISTS (SELECT 1 FROM events \
         WHERE events.stream = wanted.stream AND events.sequence = wanted.sequence)",
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
