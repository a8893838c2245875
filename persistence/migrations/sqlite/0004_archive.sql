-- The archive (archive.rs): events moved out of `events` into compressed files. Each archived
-- event keeps a thin row here (where it is, and what reads filter on), so that every read
-- still finds it; its tags stay in `event_tags`. A file is recorded only once it is durable,
-- in the transaction that deletes its events from `events`; its name carries a random part, so
-- a run that lost a race for its id never overwrites a file another run recorded.
CREATE TABLE archive_files (
    file_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    events INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE archived_events (
    global_offset INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    effective_at INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    frame_start INTEGER NOT NULL,
    frame_length INTEGER NOT NULL,
    UNIQUE (stream, sequence)
);
CREATE INDEX archived_events_by_kind ON archived_events (kind, global_offset);
