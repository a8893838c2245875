-- The lease epoch of the holder that last moved a read model's offset: a holder with an older
-- epoch (a lease taken over while it still ran) is refused (OffsetStore::advance_in).
ALTER TABLE offsets ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
