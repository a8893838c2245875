//! The SQL of the journal, snapshot and offset stores, written once and instantiated for each
//! backend (`sqlite.rs`, `postgres.rs`). The statements are portable (`$n` placeholders,
//! `RETURNING`, `ON CONFLICT`), so the only thing that differs is the sqlx database type; a
//! macro keeps the code monomorphic instead of threading sqlx's generic bounds everywhere.

/// Converts a count or position to the database's signed 64-bit integer.
pub(crate) fn to_db(value: u64) -> Result<i64, crate::Error> {
    i64::try_from(value).map_err(|_| crate::Error::InvalidRequest(format!("{value} exceeds i64")))
}

/// Reads a non-negative stored integer back.
pub(crate) fn from_db(value: i64, what: &str) -> Result<u64, crate::Error> {
    u64::try_from(value)
        .map_err(|_| crate::Error::InvalidRequest(format!("stored {what} {value} is negative")))
}

/// Rows per multi-row `INSERT` on SQLite: a power of two, under SQLite's 32 766 bind
/// parameters at ten columns a row.
pub(crate) const SQLITE_INSERT_ROWS_MAX: usize = 2_048;

const _: () = assert!(SQLITE_INSERT_ROWS_MAX.is_power_of_two());
const _: () = assert!(SQLITE_INSERT_ROWS_MAX * 10 < 32_766);

/// The largest power of two not above `remaining` nor [`SQLITE_INSERT_ROWS_MAX`]: SQLite
/// statements are cached by their text, so multi-row statements come in a dozen sizes only
/// (a batch of `n` rows takes one statement per bit of `n`) instead of one per batch size,
/// each prepared once per connection rather than parsed for every batch.
pub(crate) fn sqlite_chunk_rows(remaining: usize) -> usize {
    assert!(remaining > 0);
    let rows = 1 << remaining.min(SQLITE_INSERT_ROWS_MAX).ilog2();
    assert!(rows <= remaining);
    rows
}

macro_rules! backend_operations {
    ($database:ty) => {
        use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

        use sqlx::{Pool, Row};

        use crate::backend::{from_db, to_db};
        use crate::error::Error;
        use crate::record::{
            AppendOutcome, AppendRequest, Filter, Snapshot, StoredEvent, TAG_SEPARATOR,
        };

        type Database = $database;
        type DatabaseRow = <Database as sqlx::Database>::Row;
        type Connection = <Database as sqlx::Database>::Connection;

        const EVENT_COLUMNS: &str = "global_offset, stream, kind, sequence, event_name, \
            schema_version, payload, tags, recorded_at, effective_at";

        // Each backend defines how it selects an event row and decodes it: `EVENT_SELECT` and
        // `stored_event` for whole rows, `STREAM_EVENT_SELECT` and `stream_event` for rows of
        // one stream, which leave the stream out (the caller named it).

        fn schema_version(version: i32) -> Result<u16, Error> {
            u16::try_from(version).map_err(|_| {
                Error::InvalidRequest(format!("stored schema version {version} is out of range"))
            })
        }

        fn split_tags(tags: &str) -> Vec<String> {
            if tags.is_empty() {
                Vec::new()
            } else {
                tags.split(TAG_SEPARATOR).map(str::to_owned).collect()
            }
        }

        /// One event row to insert.
        pub(crate) struct EventRow<'a> {
            pub(crate) request: &'a AppendRequest,
            pub(crate) event: usize,
            pub(crate) sequence: i64,
            pub(crate) offset: i64,
        }

        impl EventRow<'_> {
            /// The tags as stored: joined with [`TAG_SEPARATOR`], no allocation when untagged.
            pub(crate) fn stored_tags(&self) -> std::borrow::Cow<'_, str> {
                let tags = &self.request.events[self.event].tags;
                match tags.as_slice() {
                    [] => std::borrow::Cow::Borrowed(""),
                    [tag] => std::borrow::Cow::Borrowed(tag.as_str()),
                    tags => std::borrow::Cow::Owned(tags.join(&TAG_SEPARATOR.to_string())),
                }
            }
        }

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
            to_db(batch.iter().map(|request| request.expected_sequence).max().unwrap_or(0))?;
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
            let fences: BTreeSet<&str> =
                batch.iter().filter_map(|request| request.fence.as_ref()).map(|fence| fence.key.as_str()).collect();
            let mut epochs = fence_epochs(&mut transaction, &fences).await?;
            let mut touched_fences: BTreeMap<&str, u64> = BTreeMap::new();
            for (request, _) in batch.iter().zip(&found).filter(|(_, found)| found.is_ok()) {
                let Some(fence) = &request.fence else { continue };
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
                outcomes.push(Ok(accept(request, head, &mut offset, &mut rows, recorded_at)?));
            }
            assert_eq!(offset, last_offset);
            match insert_events(&mut transaction, &rows, recorded_at).await {
                Ok(()) => {}
                Err(Error::Database(error))
                    if error.as_database_error().is_some_and(|error| error.is_unique_violation()) =>
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

        /// The rows of an accepted append at `head`, from the offset after `offset` on.
        fn accept<'a>(
            request: &'a AppendRequest,
            head: u64,
            offset: &mut i64,
            rows: &mut Vec<EventRow<'a>>,
            recorded_at: i64,
        ) -> Result<AppendOutcome, Error> {
            let first_offset = *offset + 1;
            let first_sequence = to_db(head)? + 1;
            for event in 0..request.events.len() {
                *offset += 1;
                rows.push(EventRow { request, event, sequence: first_sequence + event as i64, offset: *offset });
            }
            Ok(AppendOutcome {
                first_sequence: head + 1,
                last_sequence: head + request.events.len() as u64,
                first_offset: from_db(first_offset, "offset")?,
                recorded_at,
            })
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
            let mut heads = stream_heads(&mut transaction, &streams).await?;
            let fences: BTreeSet<&str> =
                batch.iter().filter_map(|request| request.fence.as_ref()).map(|fence| fence.key.as_str()).collect();
            let mut epochs = fence_epochs(&mut transaction, &fences).await?;

            let mut outcomes = Vec::with_capacity(batch.len());
            let mut rows = Vec::with_capacity(batch.len());
            let mut touched_fences: BTreeMap<&str, u64> = BTreeMap::new();
            let mut offset = last_offset;
            for request in batch {
                let head = heads.get(request.stream.as_str()).copied().unwrap_or(0);
                if head != request.expected_sequence {
                    outcomes.push(Err(Error::Conflict {
                        stream: request.stream.clone(),
                        expected: request.expected_sequence,
                        actual: head,
                    }));
                    continue;
                }
                if let Some(fence) = &request.fence {
                    let current = epochs.get(fence.key.as_str()).copied().unwrap_or(0);
                    if fence.epoch < current {
                        outcomes.push(Err(Error::Fenced {
                            stream: request.stream.clone(),
                            fence: fence.key.clone(),
                            epoch: fence.epoch,
                            current,
                        }));
                        continue;
                    }
                    epochs.insert(fence.key.as_str(), fence.epoch);
                    touched_fences.insert(fence.key.as_str(), fence.epoch);
                }
                let outcome = accept(request, head, &mut offset, &mut rows, recorded_at)?;
                heads.insert(request.stream.as_str(), outcome.last_sequence);
                outcomes.push(Ok(outcome));
            }
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
                let Some(head) = row.try_get::<Option<i64>, _>(1)? else { continue };
                let key = wanted.get(stream.as_str()).expect("the database returns only streams asked for");
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

        /// Records `epoch` for `fence` unless a newer one is recorded; returns the epoch in
        /// force afterwards.
        pub(crate) async fn claim_fence(pool: &Pool<Database>, fence: &str, epoch: u64) -> Result<u64, Error> {
            let mut transaction = pool.begin().await?;
            // Same lock order as appends, so a claim and a batch never interleave.
            sqlx::query("UPDATE journal_head SET last_offset = last_offset WHERE id = 1")
                .execute(&mut *transaction)
                .await?;
            let current: Option<i64> = sqlx::query_scalar(
                "INSERT INTO fences (fence, epoch) VALUES ($1, $2) \
                 ON CONFLICT (fence) DO UPDATE SET epoch = excluded.epoch \
                 WHERE fences.epoch <= excluded.epoch RETURNING epoch",
            )
            .bind(fence)
            .bind(to_db(epoch)?)
            .fetch_optional(&mut *transaction)
            .await?;
            let in_force = match current {
                Some(epoch) => epoch,
                None => sqlx::query_scalar("SELECT epoch FROM fences WHERE fence = $1")
                    .bind(fence)
                    .fetch_one(&mut *transaction)
                    .await?,
            };
            transaction.commit().await?;
            from_db(in_force, "epoch")
        }

        /// The latest epoch recorded for a fence.
        pub(crate) async fn fence_epoch(pool: &Pool<Database>, fence: &str) -> Result<Option<u64>, Error> {
            let epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM fences WHERE fence = $1")
                .bind(fence)
                .fetch_optional(pool)
                .await?;
            epoch.map(|epoch| from_db(epoch, "epoch")).transpose()
        }

        /// Events of a stream from `from_sequence` on, in order.
        pub(crate) async fn read_stream(
            pool: &Pool<Database>,
            stream: &str,
            from_sequence: u64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, Error> {
            let rows = sqlx::query(&format!(
                "SELECT {STREAM_EVENT_SELECT} FROM events WHERE stream = $1 AND sequence >= $2 \
                 ORDER BY sequence LIMIT $3"
            ))
            .bind(stream)
            .bind(to_db(from_sequence)?)
            .bind(to_db(limit as u64)?)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|row| stream_event(row, stream)).collect()
        }

        /// Events of a stream valid at `valid_at` as known at `known_at`, in valid-time
        /// order (ties in sequence order).
        pub(crate) async fn read_stream_as_of(
            pool: &Pool<Database>,
            stream: &str,
            valid_at: i64,
            known_at: i64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, Error> {
            let rows = sqlx::query(&format!(
                "SELECT {EVENT_SELECT} FROM events WHERE stream = $1 AND effective_at <= $2 \
                 AND recorded_at <= $3 ORDER BY effective_at, sequence LIMIT $4"
            ))
            .bind(stream)
            .bind(valid_at)
            .bind(known_at)
            .bind(to_db(limit as u64)?)
            .fetch_all(pool)
            .await?;
            rows.iter().map(stored_event).collect()
        }

        /// Events after `after_offset` in global order, filtered.
        pub(crate) async fn read_all(
            pool: &Pool<Database>,
            after_offset: u64,
            limit: usize,
            filter: &Filter,
        ) -> Result<Vec<StoredEvent>, Error> {
            let (after, limit) = (to_db(after_offset)?, to_db(limit as u64)?);
            let rows = match filter {
                Filter::All => {
                    sqlx::query(&format!(
                        "SELECT {EVENT_SELECT} FROM events WHERE global_offset > $1 \
                         ORDER BY global_offset LIMIT $2"
                    ))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
                Filter::Kind(kind) => {
                    sqlx::query(&format!(
                        "SELECT {EVENT_SELECT} FROM events WHERE global_offset > $1 AND kind = $2 \
                         ORDER BY global_offset LIMIT $3"
                    ))
                    .bind(after)
                    .bind(kind.as_str())
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
                Filter::Tag(tag) => {
                    sqlx::query(&format!(
                        "SELECT {EVENT_SELECT} FROM events WHERE global_offset IN \
                         (SELECT global_offset FROM event_tags WHERE global_offset > $1 AND tag = $2 \
                          ORDER BY global_offset LIMIT $3) ORDER BY global_offset"
                    ))
                    .bind(after)
                    .bind(tag.as_str())
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
            };
            rows.iter().map(stored_event).collect()
        }

        /// The last sequence of a stream (0 if it has none).
        pub(crate) async fn last_sequence(pool: &Pool<Database>, stream: &str) -> Result<u64, Error> {
            let head: Option<i64> = sqlx::query_scalar("SELECT MAX(sequence) FROM events WHERE stream = $1")
                .bind(stream)
                .fetch_one(pool)
                .await?;
            from_db(head.unwrap_or(0), "sequence")
        }

        /// The last global offset handed out (0 for an empty journal).
        pub(crate) async fn last_offset(pool: &Pool<Database>) -> Result<u64, Error> {
            let head: i64 = sqlx::query_scalar("SELECT last_offset FROM journal_head WHERE id = 1")
                .fetch_one(pool)
                .await?;
            from_db(head, "offset")
        }

        /// Stores a snapshot unless a newer one is stored.
        pub(crate) async fn save_snapshot(pool: &Pool<Database>, snapshot: &Snapshot) -> Result<(), Error> {
            sqlx::query(
                "INSERT INTO snapshots (stream, sequence, snapshot_name, schema_version, payload, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream) DO UPDATE SET \
                 sequence = excluded.sequence, snapshot_name = excluded.snapshot_name, \
                 schema_version = excluded.schema_version, payload = excluded.payload, \
                 recorded_at = excluded.recorded_at WHERE snapshots.sequence < excluded.sequence",
            )
            .bind(snapshot.stream.as_str())
            .bind(to_db(snapshot.sequence)?)
            .bind(snapshot.name.as_str())
            .bind(i32::from(snapshot.schema_version))
            .bind(snapshot.payload.as_slice())
            .bind(snapshot.recorded_at)
            .execute(pool)
            .await?;
            Ok(())
        }

        /// The latest snapshot of a stream.
        pub(crate) async fn load_snapshot(pool: &Pool<Database>, stream: &str) -> Result<Option<Snapshot>, Error> {
            let row = sqlx::query(
                "SELECT sequence, snapshot_name, schema_version, payload, recorded_at \
                 FROM snapshots WHERE stream = $1",
            )
            .bind(stream)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let version: i32 = row.try_get("schema_version")?;
            Ok(Some(Snapshot {
                stream: stream.to_owned(),
                sequence: from_db(row.try_get("sequence")?, "sequence")?,
                name: row.try_get("snapshot_name")?,
                schema_version: u16::try_from(version)
                    .map_err(|_| Error::InvalidRequest(format!("snapshot version {version} out of range")))?,
                payload: row.try_get("payload")?,
                recorded_at: row.try_get("recorded_at")?,
            }))
        }

        /// A consumer's stored position on a partition.
        pub(crate) async fn load_offset(
            connection: &mut Connection,
            consumer: &str,
            partition: u32,
        ) -> Result<Option<u64>, Error> {
            let position: Option<i64> =
                sqlx::query_scalar("SELECT position FROM offsets WHERE consumer = $1 AND partition = $2")
                    .bind(consumer)
                    .bind(i64::from(partition))
                    .fetch_optional(&mut *connection)
                    .await?;
            position.map(|position| from_db(position, "offset")).transpose()
        }

        /// Moves a consumer's position forward (or keeps it); refuses to move it back.
        pub(crate) async fn commit_offset(
            connection: &mut Connection,
            consumer: &str,
            partition: u32,
            position: u64,
            now: i64,
        ) -> Result<(), Error> {
            let stored: Option<i64> = sqlx::query_scalar(
                "INSERT INTO offsets (consumer, partition, position, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (consumer, partition) DO UPDATE SET position = excluded.position, \
                 updated_at = excluded.updated_at WHERE offsets.position <= excluded.position \
                 RETURNING position",
            )
            .bind(consumer)
            .bind(i64::from(partition))
            .bind(to_db(position)?)
            .bind(now)
            .fetch_optional(&mut *connection)
            .await?;
            if stored.is_none() {
                let current = load_offset(connection, consumer, partition).await?.unwrap_or(0);
                return Err(Error::StaleOffset {
                    consumer: consumer.to_owned(),
                    partition,
                    current,
                    requested: position,
                });
            }
            Ok(())
        }
    };
}

pub(crate) use backend_operations;
