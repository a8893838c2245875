//! The journal's SQL on PostgreSQL.
//!
//! Batches go in as arrays (`UNNEST`): one statement text whatever the batch size, so it is
//! parsed and planned once per connection. The common case of a batch is one call of the
//! `journal_append_batch` function (migration 0002): one round trip, committed by itself.

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

/// The common path: assumes each stream's head is the sequence its first append in the
/// batch expects and no fence moved past the epochs the batch carries, so nothing is read
/// first and the whole batch is one call of `journal_append_batch` (one round trip, committed
/// by itself). The function verifies the assumptions after locking the head row and raises
/// if one fails; a head above the expected sequence fails on the `(stream, sequence)` unique
/// index. Either way nothing is kept and this returns `None`.
async fn append_batch_optimistic(
    pool: &Pool<Database>,
    batch: &[AppendRequest],
    recorded_at: i64,
) -> Result<Option<Vec<Result<AppendOutcome, Error>>>, Error> {
    let Some(assumed) = Assumed::of(batch)? else {
        return Ok(None);
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut rows = Vec::with_capacity(batch.len());
    // Offsets relative to the batch, from 1: the function adds the head's offset.
    let mut offset = 0;
    for (request, found) in batch.iter().zip(&assumed.found) {
        outcomes.push(match *found {
            Ok(head) => Ok(accept(request, head, &mut offset, &mut rows, recorded_at)?),
            Err(actual) => Err(Error::Conflict {
                stream: request.stream.clone(),
                expected: request.expected_sequence,
                actual,
            }),
        });
    }
    let mut connection = pool.acquire().await?;
    let written = call_append_batch(
        &mut connection,
        &rows,
        &assumed.predecessors,
        &assumed.fences,
        recorded_at,
    )
    .await;
    let last_offset = match written {
        Ok(last_offset) => last_offset,
        Err(Error::Database(error)) if assumption_failed(&error) => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(Some(with_offsets(outcomes, last_offset, offset)?))
}

/// The outcomes of appends decided with offsets relative to the batch (from 1 to
/// `relative_last`), moved to the offsets the journal handed out (up to `last_offset`).
fn with_offsets(
    mut outcomes: Vec<Result<AppendOutcome, Error>>,
    last_offset: i64,
    relative_last: i64,
) -> Result<Vec<Result<AppendOutcome, Error>>, Error> {
    let base = from_db(last_offset - relative_last, "offset")?;
    for outcome in outcomes.iter_mut().flatten() {
        outcome.first_offset += base;
    }
    Ok(outcomes)
}

/// What the optimistic path assumes of a batch, without reading anything.
struct Assumed<'a> {
    /// The head each append found (`Ok`), or the head that refuses it (`Err`): a later
    /// append of a stream whose earlier one expected another sequence.
    found: Vec<Result<u64, u64>>,
    /// Each stream's expected head `(stream, sequence)`, above 0: must be stored.
    predecessors: Vec<(&'a str, i64)>,
    /// Each fence of an accepted append: the lowest epoch carried (no stored epoch may be
    /// above it) and the highest (stored after).
    fences: BTreeMap<&'a str, (i64, i64)>,
}

impl<'a> Assumed<'a> {
    /// `None` if the batch's own fences go back in epoch: that append must be refused, which
    /// the checked path does.
    fn of(batch: &'a [AppendRequest]) -> Result<Option<Self>, Error> {
        let mut assumed = Assumed {
            found: Vec::with_capacity(batch.len()),
            predecessors: Vec::with_capacity(batch.len()),
            fences: BTreeMap::new(),
        };
        let mut heads: HashMap<&str, u64> = HashMap::with_capacity(batch.len());
        for request in batch {
            let stream = request.stream.as_str();
            let head = match heads.get(stream) {
                Some(head) => *head,
                None => {
                    if request.expected_sequence > 0 {
                        let sequence = to_db(request.expected_sequence)?;
                        assumed.predecessors.push((stream, sequence));
                    }
                    request.expected_sequence
                }
            };
            if head != request.expected_sequence {
                assumed.found.push(Err(head));
                continue;
            }
            heads.insert(stream, head + request.events.len() as u64);
            assumed.found.push(Ok(head));
            if let Some(fence) = &request.fence {
                let epoch = to_db(fence.epoch)?;
                let (_, highest) = assumed
                    .fences
                    .entry(fence.key.as_str())
                    .or_insert((epoch, epoch));
                if epoch < *highest {
                    return Ok(None);
                }
                *highest = epoch;
            }
        }
        Ok(Some(assumed))
    }
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
    // Locks the head row; `journal_append_batch` advances it.
    sqlx::query("SELECT last_offset FROM journal_head WHERE id = 1 FOR UPDATE")
        .execute(&mut *transaction)
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
    // Offsets relative to the batch, from 1, as on the optimistic path.
    let Decided {
        outcomes,
        rows,
        touched_fences,
        last_offset: relative_last,
    } = decide(batch, heads, epochs, 0, recorded_at)?;
    if rows.is_empty() {
        transaction.rollback().await?;
        return Ok(outcomes);
    }
    // Decided against what was read under the lock: no predecessor to check, and each fence's
    // epoch is at least the one stored.
    let mut fences = BTreeMap::new();
    for (fence, epoch) in touched_fences {
        let epoch = to_db(epoch)?;
        fences.insert(fence, (epoch, epoch));
    }
    let last_offset = call_append_batch(&mut transaction, &rows, &[], &fences, recorded_at).await?;
    transaction.commit().await?;
    with_offsets(outcomes, last_offset, relative_last)
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
        decoded: Decoded::default(),
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
        decoded: Decoded::default(),
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

/// Calls `journal_append_batch` (migration 0002) with the batch's rows, relative offsets
/// from 1; returns the last offset handed out.
async fn call_append_batch(
    connection: &mut Connection,
    rows: &[EventRow<'_>],
    predecessors: &[(&str, i64)],
    fences: &BTreeMap<&str, (i64, i64)>,
    recorded_at: i64,
) -> Result<i64, Error> {
    let columns = EventColumns::of(rows, recorded_at);
    let (mut tag_names, mut tag_offsets) = (Vec::new(), Vec::new());
    for row in rows {
        for tag in &row.request.events[row.event].tags {
            tag_names.push(tag.as_str());
            tag_offsets.push(row.offset);
        }
    }
    let (predecessor_streams, predecessor_sequences): (Vec<&str>, Vec<i64>) =
        predecessors.iter().copied().unzip();
    let fence_keys: Vec<&str> = fences.keys().copied().collect();
    let (fence_lowest, fence_highest): (Vec<i64>, Vec<i64>) = fences.values().copied().unzip();
    Ok(sqlx::query_scalar(
        "SELECT journal_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18)",
    )
    .bind(i64::try_from(rows.len()).expect("a batch's rows fit i64"))
    .bind(columns.offsets)
    .bind(columns.streams)
    .bind(columns.kinds)
    .bind(columns.sequences)
    .bind(columns.names)
    .bind(columns.versions)
    .bind(columns.payloads)
    .bind(columns.tags)
    .bind(columns.effective)
    .bind(recorded_at)
    .bind(tag_names)
    .bind(tag_offsets)
    .bind(predecessor_streams)
    .bind(predecessor_sequences)
    .bind(fence_keys)
    .bind(fence_lowest)
    .bind(fence_highest)
    .fetch_one(&mut *connection)
    .await?)
}

/// Whether `journal_append_batch` failed because the optimistic path's assumption did not
/// hold (nothing of the batch was kept): a stream behind its expected head or a fence moved
/// on (`TF001`, raised by the function), or a stream beyond it (a unique violation).
fn assumption_failed(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|error| {
        error.is_unique_violation() || error.code().as_deref() == Some("TF001")
    })
}

/// The event rows of a batch as one array per column, for `UNNEST`.
struct EventColumns<'a> {
    offsets: Vec<i64>,
    streams: Vec<&'a str>,
    kinds: Vec<&'a str>,
    sequences: Vec<i64>,
    names: Vec<&'a str>,
    versions: Vec<i32>,
    payloads: Vec<&'a [u8]>,
    tags: Vec<std::borrow::Cow<'a, str>>,
    effective: Vec<i64>,
}

impl<'a> EventColumns<'a> {
    fn of(rows: &'a [EventRow<'a>], recorded_at: i64) -> Self {
        let mut columns = EventColumns {
            offsets: Vec::with_capacity(rows.len()),
            streams: Vec::with_capacity(rows.len()),
            kinds: Vec::with_capacity(rows.len()),
            sequences: Vec::with_capacity(rows.len()),
            names: Vec::with_capacity(rows.len()),
            versions: Vec::with_capacity(rows.len()),
            payloads: Vec::with_capacity(rows.len()),
            tags: Vec::with_capacity(rows.len()),
            effective: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let event = &row.request.events[row.event];
            columns.offsets.push(row.offset);
            columns.streams.push(row.request.stream.as_str());
            columns.kinds.push(row.request.kind.as_str());
            columns.sequences.push(row.sequence);
            columns.names.push(event.name.as_str());
            columns.versions.push(i32::from(event.schema_version));
            columns.payloads.push(event.payload.as_slice());
            columns.tags.push(row.stored_tags());
            columns
                .effective
                .push(event.effective_at.unwrap_or(recorded_at));
        }
        columns
    }
}
