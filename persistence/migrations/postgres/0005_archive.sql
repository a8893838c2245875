-- The archive (archive.rs): events moved out of `events` into compressed files. Each archived
-- event keeps a thin row here (where it is, and what reads filter on), so that every read
-- still finds it; its tags stay in `event_tags`. A file is recorded only once it is durable,
-- in the transaction that deletes its events from `events`; its name carries a random part, so
-- a run that lost a race for its id never overwrites a file another run recorded.
CREATE TABLE archive_files (
    file_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    events BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE archived_events (
    global_offset BIGINT PRIMARY KEY,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    effective_at BIGINT NOT NULL,
    file_id BIGINT NOT NULL,
    frame_start BIGINT NOT NULL,
    frame_length BIGINT NOT NULL,
    UNIQUE (stream, sequence)
);
CREATE INDEX archived_events_by_kind ON archived_events (kind, global_offset);
