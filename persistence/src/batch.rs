//! Deciding a batch of appends against the stream heads and fence epochs it found: the pure
//! part of a group commit, shared by the SQLite writer and the PostgreSQL backend.

use std::collections::{BTreeMap, HashMap};

use crate::backend::{from_db, to_db};
use crate::error::Error;
use crate::record::{AppendOutcome, AppendRequest, TAG_SEPARATOR};

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

/// What a batch decided: an outcome per append, the rows to insert, the fences whose epoch
/// the accepted appends record, and the last offset handed out.
pub(crate) struct Decided<'a> {
    pub(crate) outcomes: Vec<Result<AppendOutcome, Error>>,
    pub(crate) rows: Vec<EventRow<'a>>,
    pub(crate) touched_fences: BTreeMap<&'a str, u64>,
    pub(crate) last_offset: i64,
}

/// Decides every append of `batch` in order: accepted if its stream is at the sequence it
/// expects and its fence (if any) is not older than the epoch in force; then its stream's
/// head and its fence's epoch move on for the appends after it. `heads` holds the streams
/// that have events, `epochs` the fences recorded, both as read under the write lock.
pub(crate) fn decide<'a>(
    batch: &'a [AppendRequest],
    mut heads: HashMap<&'a str, u64>,
    mut epochs: BTreeMap<&'a str, u64>,
    last_offset: i64,
    recorded_at: i64,
) -> Result<Decided<'a>, Error> {
    let mut decided = Decided {
        outcomes: Vec::with_capacity(batch.len()),
        rows: Vec::with_capacity(batch.len()),
        touched_fences: BTreeMap::new(),
        last_offset,
    };
    for request in batch {
        let head = heads.get(request.stream.as_str()).copied().unwrap_or(0);
        if head != request.expected_sequence {
            decided.outcomes.push(Err(Error::Conflict {
                stream: request.stream.clone(),
                expected: request.expected_sequence,
                actual: head,
            }));
            continue;
        }
        if let Some(fence) = &request.fence {
            let current = epochs.get(fence.key.as_str()).copied().unwrap_or(0);
            if fence.epoch < current {
                decided.outcomes.push(Err(Error::Fenced {
                    stream: request.stream.clone(),
                    fence: fence.key.clone(),
                    epoch: fence.epoch,
                    current,
                }));
                continue;
            }
            epochs.insert(fence.key.as_str(), fence.epoch);
            decided
                .touched_fences
                .insert(fence.key.as_str(), fence.epoch);
        }
        let outcome = accept(
            request,
            head,
            &mut decided.last_offset,
            &mut decided.rows,
            recorded_at,
        )?;
        heads.insert(request.stream.as_str(), outcome.last_sequence);
        decided.outcomes.push(Ok(outcome));
    }
    Ok(decided)
}

/// The rows of an accepted append at `head`, from the offset after `offset` on.
pub(crate) fn accept<'a>(
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
        rows.push(EventRow {
            request,
            event,
            sequence: first_sequence + event as i64,
            offset: *offset,
        });
    }
    Ok(AppendOutcome {
        first_sequence: head + 1,
        last_sequence: head + request.events.len() as u64,
        first_offset: from_db(first_offset, "offset")?,
        recorded_at,
    })
}
