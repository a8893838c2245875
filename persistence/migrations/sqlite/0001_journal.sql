-- The journal's one row of global state: the last global offset handed out. Writers update it
-- first in every append transaction, so appends commit in offset order and a reader never
-- sees a lower offset appear after a higher one.
CREATE TABLE journal_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_offset INTEGER NOT NULL
);
INSERT INTO journal_head (id, last_offset) VALUES (1, 0);

CREATE TABLE events (
    global_offset INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event_name TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    tags TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    effective_at INTEGER NOT NULL,
    -- Also how a stream's head is found: its greatest sequence, one index probe.
    UNIQUE (stream, sequence)
);
CREATE INDEX events_by_kind ON events (kind, global_offset);

CREATE TABLE event_tags (
    tag TEXT NOT NULL,
    global_offset INTEGER NOT NULL,
    PRIMARY KEY (tag, global_offset)
) WITHOUT ROWID;

CREATE TABLE fences (
    fence TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
);

CREATE TABLE snapshots (
    stream TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL,
    snapshot_name TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    recorded_at INTEGER NOT NULL
);

CREATE TABLE offsets (
    consumer TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition)
);
