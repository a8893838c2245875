//! The SQL of the journal's reads, fences, snapshot and offset stores, written once and
//! instantiated for each backend (`sqlite.rs`, `postgres.rs`); appends are each backend's own
//! (`sqlite_writer.rs`, `postgres.rs`), deciding batches with the same code (`batch.rs`). The statements are portable (`$n` placeholders,
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

macro_rules! backend_operations {
    ($database:ty) => {
        use sqlx::{Pool, Row};

        use crate::backend::{from_db, to_db};
        use crate::error::Error;
        use crate::record::{Decoded, Filter, Snapshot, StoredEvent, TAG_SEPARATOR};

        type Database = $database;
        type DatabaseRow = <Database as sqlx::Database>::Row;
        type Connection = <Database as sqlx::Database>::Connection;

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

        /// The thin rows of archived events, with their file's name (see `archive.rs`):
        /// `condition` on `a` (`archived_events`), the `binds` in order, then the limit.
        async fn archived_rows(
            pool: &Pool<Database>,
            condition: &str,
            order: &str,
            binds: &[crate::sql_value::SqlValue],
            limit: usize,
        ) -> Result<Vec<crate::archive::ArchivedRow>, Error> {
            let sql = format!(
                "SELECT a.global_offset, f.name, a.frame_start, a.frame_length \
                 FROM archived_events a JOIN archive_files f ON f.file_id = a.file_id \
                 WHERE {condition} ORDER BY {order} LIMIT ${}",
                binds.len() + 1
            );
            let mut query = sqlx::query(&sql);
            for bind in binds {
                query = match bind {
                    crate::sql_value::SqlValue::Integer(value) => query.bind(*value),
                    crate::sql_value::SqlValue::Text(value) => query.bind(value.as_str()),
                    other => {
                        return Err(Error::InvalidRequest(format!("unexpected bind {other:?}")));
                    }
                };
            }
            let rows = query.bind(to_db(limit as u64)?).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(crate::archive::ArchivedRow {
                        global_offset: from_db(row.try_get(0)?, "offset")?,
                        file: row.try_get(1)?,
                        frame_start: from_db(row.try_get(2)?, "frame start")?,
                        frame_length: from_db(row.try_get(3)?, "frame length")?,
                    })
                })
                .collect()
        }

        /// [`read_stream`] of the archived events.
        pub(crate) async fn archived_of_stream(
            pool: &Pool<Database>,
            stream: &str,
            from_sequence: u64,
            limit: usize,
        ) -> Result<Vec<crate::archive::ArchivedRow>, Error> {
            use crate::sql_value::SqlValue;
            let binds = [SqlValue::Text(stream.to_owned()), SqlValue::Integer(to_db(from_sequence)?)];
            archived_rows(pool, "a.stream = $1 AND a.sequence >= $2", "a.sequence", &binds, limit).await
        }

        /// [`read_stream_as_of`] of the archived events.
        pub(crate) async fn archived_as_of(
            pool: &Pool<Database>,
            stream: &str,
            valid_at: i64,
            known_at: i64,
            limit: usize,
        ) -> Result<Vec<crate::archive::ArchivedRow>, Error> {
            use crate::sql_value::SqlValue;
            let binds = [
                SqlValue::Text(stream.to_owned()),
                SqlValue::Integer(valid_at),
                SqlValue::Integer(known_at),
            ];
            let condition = "a.stream = $1 AND a.effective_at <= $2 AND a.recorded_at <= $3";
            archived_rows(pool, condition, "a.effective_at, a.sequence", &binds, limit).await
        }

        /// [`read_all`] of the archived events.
        pub(crate) async fn archived_after(
            pool: &Pool<Database>,
            after_offset: u64,
            limit: usize,
            filter: &Filter,
        ) -> Result<Vec<crate::archive::ArchivedRow>, Error> {
            use crate::sql_value::SqlValue;
            let after = SqlValue::Integer(to_db(after_offset)?);
            let order = "a.global_offset";
            match filter {
                Filter::All => archived_rows(pool, "a.global_offset > $1", order, &[after], limit).await,
                Filter::Kind(kind) => {
                    let binds = [after, SqlValue::Text(kind.clone())];
                    archived_rows(pool, "a.global_offset > $1 AND a.kind = $2", order, &binds, limit).await
                }
                Filter::Tag(tag) => {
                    let binds = [after, SqlValue::Text(tag.clone())];
                    let condition = "a.global_offset IN (SELECT global_offset FROM event_tags \
                         WHERE global_offset > $1 AND tag = $2)";
                    archived_rows(pool, condition, order, &binds, limit).await
                }
            }
        }

        /// Up to `limit` events after `after_offset` that may be archived (see `archive.rs`):
        /// recorded before `recorded_before`, covered by their stream's snapshot, and not
        /// their stream's last event.
        pub(crate) async fn archive_candidates(
            pool: &Pool<Database>,
            after_offset: u64,
            recorded_before: i64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, Error> {
            let rows = sqlx::query(&format!(
                "SELECT {EVENT_SELECT} FROM events WHERE global_offset > $1 AND recorded_at < $2 \
                 AND sequence <= (SELECT s.sequence FROM snapshots s WHERE s.stream = events.stream) \
                 AND sequence < (SELECT MAX(h.sequence) FROM events h WHERE h.stream = events.stream) \
                 ORDER BY global_offset LIMIT $3"
            ))
            .bind(to_db(after_offset)?)
            .bind(recorded_before)
            .bind(to_db(limit as u64)?)
            .fetch_all(pool)
            .await?;
            rows.iter().map(stored_event).collect()
        }

        /// Records archive file `file` and moves its `events` out of `events`, in one
        /// transaction; `frames` are the events' frames as written. Refused (nothing changes)
        /// if another run recorded the id first.
        pub(crate) async fn record_archive(
            pool: &Pool<Database>,
            file: &crate::archive::RecordedFile,
            events: &[StoredEvent],
            frames: &[(u64, u64)],
        ) -> Result<(), Error> {
            assert_eq!(events.len(), frames.len(), "a frame per event");
            let mut transaction = pool.begin().await?;
            sqlx::query(
                "INSERT INTO archive_files (file_id, name, first_offset, last_offset, events, bytes, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(to_db(file.file_id)?)
            .bind(file.name.as_str())
            .bind(to_db(file.first_offset)?)
            .bind(to_db(file.last_offset)?)
            .bind(to_db(file.events)?)
            .bind(to_db(file.bytes)?)
            .bind(file.created_at)
            .execute(&mut *transaction)
            .await?;
            const ROWS_PER_INSERT: usize = 100;
            let rows: Vec<_> = events.iter().zip(frames).collect();
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|row| {
                        let at = row * 9;
                        format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            at + 1, at + 2, at + 3, at + 4, at + 5, at + 6, at + 7, at + 8, at + 9
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO archived_events (global_offset, stream, kind, sequence, recorded_at, \
                     effective_at, file_id, frame_start, frame_length) VALUES {}",
                    values.join(", ")
                );
                let mut query = sqlx::query(&sql);
                for (event, (start, length)) in chunk {
                    query = query
                        .bind(to_db(event.global_offset)?)
                        .bind(event.stream.as_str())
                        .bind(event.kind.as_str())
                        .bind(to_db(event.sequence)?)
                        .bind(event.recorded_at)
                        .bind(event.effective_at)
                        .bind(to_db(file.file_id)?)
                        .bind(to_db(*start)?)
                        .bind(to_db(*length)?);
                }
                query.execute(&mut *transaction).await?;
            }
            let deleted = sqlx::query(
                "DELETE FROM events WHERE global_offset IN \
                 (SELECT global_offset FROM archived_events WHERE file_id = $1)",
            )
            .bind(to_db(file.file_id)?)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            if deleted != events.len() as u64 {
                // Events never change or vanish but by a run like this one: another got there.
                return Err(Error::InvalidRequest(format!(
                    "archive file {} would move {deleted} events, not {}: another run moved some",
                    file.file_id,
                    events.len()
                )));
            }
            transaction.commit().await?;
            Ok(())
        }

        /// The next archive file's id.
        pub(crate) async fn next_archive_file(pool: &Pool<Database>) -> Result<u64, Error> {
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(file_id) FROM archive_files")
                .fetch_one(pool)
                .await?;
            Ok(from_db(last.unwrap_or(0), "file id")? + 1)
        }

        /// What the archive holds: files, events and bytes.
        pub(crate) async fn archive_totals(pool: &Pool<Database>) -> Result<(u64, u64, u64), Error> {
            let (files, events, bytes): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), CAST(SUM(events) AS BIGINT), CAST(SUM(bytes) AS BIGINT) FROM archive_files",
            )
            .fetch_one(pool)
            .await?;
            Ok((
                from_db(files, "files")?,
                from_db(events.unwrap_or(0), "events")?,
                from_db(bytes.unwrap_or(0), "bytes")?,
            ))
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
                sqlx::query_scalar($crate::backend::LOAD_OFFSET)
                    .bind(consumer)
                    .bind(i64::from(partition))
                    .fetch_optional(&mut *connection)
                    .await?;
            position.map(|position| from_db(position, "offset")).transpose()
        }

        /// A consumer's stored position and lease epoch on a partition.
        pub(crate) async fn load_offset_epoch(
            connection: &mut Connection,
            consumer: &str,
            partition: u32,
        ) -> Result<Option<(u64, u64)>, Error> {
            let row: Option<(i64, i64)> = sqlx::query_as($crate::backend::LOAD_OFFSET_EPOCH)
                .bind(consumer)
                .bind(i64::from(partition))
                .fetch_optional(&mut *connection)
                .await?;
            row.map(|(position, epoch)| {
                Ok((from_db(position, "offset")?, from_db(epoch, "offset epoch")?))
            })
            .transpose()
        }

        /// Moves a consumer's position forward (or keeps it); refuses to move it back. With
        /// `advance`, moves it only as [`Advance`](crate::backend::Advance) says.
        pub(crate) async fn commit_offset(
            connection: &mut Connection,
            consumer: &str,
            partition: u32,
            advance: Option<$crate::backend::Advance>,
            position: u64,
            now: i64,
        ) -> Result<(), Error> {
            let query = sqlx::query_scalar($crate::backend::offset_statement(advance))
                .bind(consumer)
                .bind(i64::from(partition))
                .bind(to_db(position)?)
                .bind(now);
            let query = match advance {
                Some(advance @ $crate::backend::Advance { from: 1.., .. }) => {
                    query.bind(to_db(advance.from)?).bind(to_db(advance.epoch)?)
                }
                Some(advance) => query.bind(to_db(advance.epoch)?),
                None => query,
            };
            let stored: Option<i64> = query.fetch_optional(&mut *connection).await?;
            if stored.is_none() {
                let stored = load_offset_epoch(connection, consumer, partition).await?;
                return Err($crate::backend::offset_refusal(
                    consumer, partition, stored, advance, position,
                ));
            }
            Ok(())
        }
    };
}

pub(crate) use backend_operations;

/// A move of an offset by a holder of its consumer's lease: only from `from` (the position
/// the holder read or last committed), and only if no holder with a later lease `epoch`
/// committed it. Two holders that applied the same events cannot both commit them, and a
/// stale holder is refused once the new one has committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advance {
    /// The position the holder read or last committed (0: none).
    pub from: u64,
    /// The holder's lease epoch.
    pub epoch: u64,
}

/// Moves a consumer's position from `$5` to `$3` for a holder of epoch `$6`: returns the row
/// only if it moved.
pub(crate) const ADVANCE_OFFSET: &str = "UPDATE offsets SET position = $3, updated_at = $4, \
     epoch = $6 WHERE consumer = $1 AND partition = $2 AND position = $5 AND epoch <= $6 \
     RETURNING position";

/// [`ADVANCE_OFFSET`] from 0, which an absent row also stands for; the epoch is `$5`.
pub(crate) const ADVANCE_OFFSET_FROM_ZERO: &str = "INSERT INTO offsets \
     (consumer, partition, position, updated_at, epoch) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (consumer, partition) DO UPDATE SET position = excluded.position, \
     updated_at = excluded.updated_at, epoch = excluded.epoch \
     WHERE offsets.position = 0 AND offsets.epoch <= excluded.epoch RETURNING position";

/// The statement that moves an offset: forward only (`advance` is `None`), or as `advance`
/// says.
pub(crate) fn offset_statement(advance: Option<Advance>) -> &'static str {
    match advance {
        None => COMMIT_OFFSET,
        Some(Advance { from: 0, .. }) => ADVANCE_OFFSET_FROM_ZERO,
        Some(_) => ADVANCE_OFFSET,
    }
}

/// Why an offset did not move: [`Error::OffsetFenced`] if a holder with a later epoch
/// committed it, else [`Error::StaleOffset`].
pub(crate) fn offset_refusal(
    consumer: &str,
    partition: u32,
    stored: Option<(u64, u64)>,
    advance: Option<Advance>,
    requested: u64,
) -> crate::Error {
    let (current, stored_epoch) = stored.unwrap_or((0, 0));
    match advance {
        Some(Advance { epoch, .. }) if stored_epoch > epoch => crate::Error::OffsetFenced {
            consumer: consumer.to_owned(),
            partition,
            epoch,
            stored_epoch,
        },
        _ => crate::Error::StaleOffset {
            consumer: consumer.to_owned(),
            partition,
            current,
            requested,
        },
    }
}

/// A consumer's stored position and epoch on a partition.
pub(crate) const LOAD_OFFSET_EPOCH: &str =
    "SELECT position, epoch FROM offsets WHERE consumer = $1 AND partition = $2";

/// A consumer's stored position on a partition.
pub(crate) const LOAD_OFFSET: &str =
    "SELECT position FROM offsets WHERE consumer = $1 AND partition = $2";

/// Moves a consumer's position forward (or keeps it): returns the row only if it moved, so
/// no row means the position would have moved back.
pub(crate) const COMMIT_OFFSET: &str = "INSERT INTO offsets (consumer, partition, position, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, partition) DO UPDATE SET \
     position = excluded.position, updated_at = excluded.updated_at \
     WHERE offsets.position <= excluded.position RETURNING position";
