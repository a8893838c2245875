-- The common case of a batch of appends in one statement, so one round trip that commits by
-- itself (autocommit) instead of a transaction of six: the head row is locked and advanced
-- first (batches commit in offset order), then the assumptions the caller made without reading
-- are checked, and any that fails raises SQLSTATE TF001 so that nothing is kept and the caller
-- decides the batch against the heads it reads instead. A stream above the sequence expected
-- fails on the (stream, sequence) unique index (SQLSTATE 23505), handled the same way. The
-- checked path calls it too, in its transaction, with nothing left to check.
--
--   event_count        events in the batch; offsets are relative, 1 .. event_count
--   fence_keys …       each fence the batch's appends carry, with the lowest epoch they carry
--                      (no stored epoch may be above it) and the highest (stored after)
--   predecessor_…      (stream, sequence) of each stream's expected head: must exist
CREATE FUNCTION journal_append_batch(
    event_count BIGINT,
    relative_offsets BIGINT[], streams TEXT[], kinds TEXT[], sequences BIGINT[],
    names TEXT[], versions INTEGER[], payloads BYTEA[], stored_tags TEXT[],
    effective BIGINT[], recorded BIGINT,
    tag_names TEXT[], tag_offsets BIGINT[],
    predecessor_streams TEXT[], predecessor_sequences BIGINT[],
    fence_keys TEXT[], fence_lowest BIGINT[], fence_highest BIGINT[]
) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    last BIGINT;
    base BIGINT;
    found_predecessors BIGINT;
BEGIN
    UPDATE journal_head SET last_offset = last_offset + event_count WHERE id = 1
        RETURNING last_offset INTO last;
    base := last - event_count;
    IF EXISTS (SELECT 1 FROM UNNEST(fence_keys, fence_lowest) AS wanted(fence, epoch)
               JOIN fences ON fences.fence = wanted.fence WHERE fences.epoch > wanted.epoch) THEN
        RAISE EXCEPTION 'a fence moved on' USING ERRCODE = 'TF001';
    END IF;
    -- One index probe per pair (LATERAL … LIMIT 1): a semi-join's cached plan may hash the
    -- pairs and scan the whole table.
    SELECT COUNT(*) INTO found_predecessors
        FROM UNNEST(predecessor_streams, predecessor_sequences) AS wanted(stream, sequence)
        CROSS JOIN LATERAL (SELECT 1 FROM events WHERE events.stream = wanted.stream
                            AND events.sequence = wanted.sequence LIMIT 1) AS present;
    IF found_predecessors <> COALESCE(array_length(predecessor_streams, 1), 0) THEN
        RAISE EXCEPTION 'a stream is behind its expected head' USING ERRCODE = 'TF001';
    END IF;
    INSERT INTO events (global_offset, stream, kind, sequence, event_name, schema_version,
                        payload, tags, recorded_at, effective_at)
        SELECT base + row.relative, row.stream, row.kind, row.sequence, row.event_name,
               row.schema_version, row.payload, row.tags, recorded, row.effective_at
        FROM UNNEST(relative_offsets, streams, kinds, sequences, names, versions, payloads,
                    stored_tags, effective)
        AS row(relative, stream, kind, sequence, event_name, schema_version, payload, tags,
               effective_at);
    INSERT INTO event_tags (tag, global_offset)
        SELECT tag.name, base + tag.relative FROM UNNEST(tag_names, tag_offsets) AS tag(name, relative);
    INSERT INTO fences (fence, epoch)
        SELECT * FROM UNNEST(fence_keys, fence_highest)
        ON CONFLICT (fence) DO UPDATE SET epoch = excluded.epoch;
    RETURN last;
END
$$;
