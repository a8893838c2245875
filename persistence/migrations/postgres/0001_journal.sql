-- The journal's one row of global state: the last global offset handed out. Writers update it
-- first in every append transaction, so appends commit in offset order and a reader never
-- sees a lower offset appear after a higher one.
CREATE TABLE journal_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    last_offset BIGINT NOT NULL
);
INSERT INTO journal_head (id, last_offset) VALUES (1, 0);

CREATE TABLE events (
    global_offset BIGINT PRIMARY KEY,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    event_name TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    tags TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    effective_at BIGINT NOT NULL,
    -- Also how a stream's head is found: its greatest sequence, one index probe.
    UNIQUE (stream, sequence)
);
CREATE INDEX events_by_kind ON events (kind, global_offset);

CREATE TABLE event_tags (
    tag TEXT NOT NULL,
    global_offset BIGINT NOT NULL,
    PRIMARY KEY (tag, global_offset)
);

CREATE TABLE fences (
    fence TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL
);

CREATE TABLE snapshots (
    stream TEXT PRIMARY KEY,
    sequence BIGINT NOT NULL,
    snapshot_name TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE TABLE offsets (
    consumer TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, partition)
);
