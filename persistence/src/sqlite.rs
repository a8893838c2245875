//! The journal's SQL on SQLite.

use sqlx::QueryBuilder;

use crate::backend::sqlite_chunk_rows;

crate::backend::backend_operations!(sqlx::Sqlite);

/// `(stream, head)` rows for `streams`, head `NULL` for a stream without events.
async fn fetch_stream_heads(
    connection: &mut Connection,
    streams: &[&str],
) -> Result<Vec<DatabaseRow>, Error> {
    let mut rows = Vec::with_capacity(streams.len());
    let mut remaining = streams;
    while !remaining.is_empty() {
        let (chunk, rest) = remaining.split_at(sqlite_chunk_rows(remaining.len()));
        remaining = rest;
        let mut query = QueryBuilder::<Database>::new(
            "SELECT candidate.column1, (SELECT MAX(sequence) FROM events \
             WHERE events.stream = candidate.column1) FROM (",
        );
        query.push_values(chunk, |mut values, stream| {
            values.push_bind(*stream);
        });
        query.push(") AS candidate");
        rows.extend(query.build().fetch_all(&mut *connection).await?);
    }
    Ok(rows)
}

/// How many of the `(stream, sequence)` pairs are stored: one index probe each.
async fn count_existing(
    connection: &mut Connection,
    pairs: &[(&str, i64)],
) -> Result<usize, Error> {
    let mut existing = 0;
    let mut remaining = pairs;
    while !remaining.is_empty() {
        let (chunk, rest) = remaining.split_at(sqlite_chunk_rows(remaining.len()));
        remaining = rest;
        let mut query = QueryBuilder::<Database>::new("SELECT COUNT(*) FROM (");
        query.push_values(chunk, |mut values, (stream, sequence)| {
            values.push_bind(*stream).push_bind(*sequence);
        });
        query.push(
            ") AS wanted WHERE EXISTS (SELECT 1 FROM events \
             WHERE events.stream = wanted.column1 AND events.sequence = wanted.column2)",
        );
        let count: i64 = query
            .build_query_scalar()
            .fetch_one(&mut *connection)
            .await?;
        existing += from_db(count, "count")? as usize;
    }
    Ok(existing)
}

/// Inserts the event rows with multi-row `INSERT`s of power-of-two sizes.
async fn insert_events(
    connection: &mut Connection,
    rows: &[EventRow<'_>],
    recorded_at: i64,
) -> Result<(), Error> {
    let mut remaining = rows;
    while !remaining.is_empty() {
        let (chunk, rest) = remaining.split_at(sqlite_chunk_rows(remaining.len()));
        remaining = rest;
        let mut query =
            QueryBuilder::<Database>::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
        query.push_values(chunk, |mut values, row| {
            let event = &row.request.events[row.event];
            values
                .push_bind(row.offset)
                .push_bind(row.request.stream.as_str())
                .push_bind(row.request.kind.as_str())
                .push_bind(row.sequence)
                .push_bind(event.name.as_str())
                .push_bind(i32::from(event.schema_version))
                .push_bind(event.payload.as_slice())
                .push_bind(row.stored_tags())
                .push_bind(recorded_at)
                .push_bind(event.effective_at.unwrap_or(recorded_at));
        });
        query.build().execute(&mut *connection).await?;
    }
    Ok(())
}

/// Inserts one `event_tags` row per tag of each event.
async fn insert_tags(connection: &mut Connection, rows: &[EventRow<'_>]) -> Result<(), Error> {
    let tagged: Vec<(&str, i64)> = rows
        .iter()
        .flat_map(|row| {
            let tags = &row.request.events[row.event].tags;
            tags.iter().map(move |tag| (tag.as_str(), row.offset))
        })
        .collect();
    let mut remaining = tagged.as_slice();
    while !remaining.is_empty() {
        let (chunk, rest) = remaining.split_at(sqlite_chunk_rows(remaining.len()));
        remaining = rest;
        let mut query =
            QueryBuilder::<Database>::new("INSERT INTO event_tags (tag, global_offset) ");
        query.push_values(chunk, |mut values, (tag, offset)| {
            values.push_bind(*tag).push_bind(*offset);
        });
        query.build().execute(&mut *connection).await?;
    }
    Ok(())
}
