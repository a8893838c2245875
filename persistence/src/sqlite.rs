//! The journal's SQL on SQLite.

crate::backend::backend_operations!(sqlx::Sqlite);

// Reads return each event as one value. sqlx copies every column of every row on SQLite's
// worker thread (a value copy and an `Arc`, each allocated there and freed on the reading
// thread); profiled, that thread, not the decoding, was the busy one in a replay. So SQLite
// packs a row into one blob: a header of space-terminated decimal integers (the integer
// columns, then the byte lengths of the text columns), the text columns, and the payload as
// the rest. In the journal bench this took replay from 150–170 k to 200–300 k events/s
// (load 5–6 on 2 cores).

/// A whole event row packed into one value, as [`stored_event`] decodes it.
const EVENT_SELECT: &str = "CAST(printf('%d %d %d %d %d %d %d %d %d ', global_offset, sequence, \
    schema_version, recorded_at, effective_at, octet_length(stream), octet_length(kind), \
    octet_length(event_name), octet_length(tags)) || stream || kind || event_name || tags \
    || payload AS BLOB)";

/// Decodes a row of [`EVENT_SELECT`].
fn stored_event(row: &DatabaseRow) -> Result<StoredEvent, Error> {
    let packed: &[u8] = row.try_get(0)?;
    let (
        [
            offset,
            sequence,
            version,
            recorded_at,
            effective_at,
            lengths @ ..,
        ],
        rest,
    ) = packed_header::<9>(packed)?;
    let [stream, kind, name, tags, payload] = packed_fields(rest, &lengths)?;
    Ok(StoredEvent {
        global_offset: from_db(offset, "offset")?,
        stream: packed_text(stream)?.to_owned(),
        kind: packed_text(kind)?.to_owned(),
        sequence: from_db(sequence, "sequence")?,
        name: packed_text(name)?.to_owned(),
        schema_version: schema_version(packed_version(version)?)?,
        payload: payload.to_vec(),
        tags: split_tags(packed_text(tags)?),
        recorded_at,
        effective_at,
        decoded: Decoded::default(),
    })
}

/// An event row of one stream packed into one value (the stream left out: the caller named
/// it), as [`stream_event`] decodes it.
const STREAM_EVENT_SELECT: &str = "CAST(printf('%d %d %d %d %d %d %d %d ', global_offset, \
    sequence, schema_version, recorded_at, effective_at, octet_length(kind), \
    octet_length(event_name), octet_length(tags)) || kind || event_name || tags || payload \
    AS BLOB)";

/// Decodes a row of [`STREAM_EVENT_SELECT`] of `stream`.
fn stream_event(row: &DatabaseRow, stream: &str) -> Result<StoredEvent, Error> {
    let packed: &[u8] = row.try_get(0)?;
    let (
        [
            offset,
            sequence,
            version,
            recorded_at,
            effective_at,
            lengths @ ..,
        ],
        rest,
    ) = packed_header::<8>(packed)?;
    let [kind, name, tags, payload] = packed_fields(rest, &lengths)?;
    Ok(StoredEvent {
        global_offset: from_db(offset, "offset")?,
        stream: stream.to_owned(),
        kind: packed_text(kind)?.to_owned(),
        sequence: from_db(sequence, "sequence")?,
        name: packed_text(name)?.to_owned(),
        schema_version: schema_version(packed_version(version)?)?,
        payload: payload.to_vec(),
        tags: split_tags(packed_text(tags)?),
        recorded_at,
        effective_at,
        decoded: Decoded::default(),
    })
}

fn malformed(what: &str) -> Error {
    Error::InvalidRequest(format!("stored event row is malformed: {what}"))
}

/// The `N` space-terminated integers a packed row starts with, and the bytes after them.
fn packed_header<const N: usize>(packed: &[u8]) -> Result<([i64; N], &[u8]), Error> {
    let mut values = [0; N];
    let mut rest = packed;
    for value in &mut values {
        let end = rest
            .iter()
            .position(|byte| *byte == b' ')
            .ok_or_else(|| malformed("header too short"))?;
        *value = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| malformed("header value not an integer"))?;
        rest = &rest[end + 1..];
    }
    Ok((values, rest))
}

/// Splits `rest` into fields of the given byte `lengths`, and the remainder last.
fn packed_fields<'r, const N: usize, const FIELDS: usize>(
    mut rest: &'r [u8],
    lengths: &[i64; N],
) -> Result<[&'r [u8]; FIELDS], Error> {
    const { assert!(FIELDS == N + 1) };
    let mut fields = [&[][..]; FIELDS];
    for (field, length) in fields.iter_mut().zip(lengths) {
        let length = usize::try_from(*length).map_err(|_| malformed("negative length"))?;
        if length > rest.len() {
            return Err(malformed("field longer than the row"));
        }
        (*field, rest) = rest.split_at(length);
    }
    fields[N] = rest;
    Ok(fields)
}

fn packed_text(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| malformed("text not UTF-8"))
}

fn packed_version(version: i64) -> Result<i32, Error> {
    i32::try_from(version).map_err(|_| malformed("schema version out of range"))
}
